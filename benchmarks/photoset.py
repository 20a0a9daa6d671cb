"""Photographed digits, synthetic: official MNIST test digits as if written on paper and photographed.

Each photo (``make_photo``, seeded, deterministic) takes one official test digit and:

- writes it on **paper**: an off-white sheet with a random tint, fibre grain and, on a third of the sheets,
  faint squared or ruled lines (German school paper); the ink is a black, blue or pencil-grey pen whose
  darkness follows the digit's grey levels, the strokes made thinner than MNIST's on half the digits (a
  ballpoint on a large digit);
- places it at a random **size** (the digit 22–55 % of the photo's height) and position, rotated ±12°, under a
  random **perspective** (corners moved by up to 6 %);
- **lights** it unevenly: a brightness of 0.55–1.1, a linear gradient up to ±30 %, a vignette, and on a
  third of the photos a soft shadow (a hand or a phone) darkening part of the sheet by 25–50 %;
- **blurs** it (Gaussian σ 0–2.2 px at 480 × 640; a slight motion blur on a quarter), adds sensor noise
  (σ 2–7 grey levels) and saves it as a JPEG of quality 55–90.

``python -m benchmarks.photoset --n 500`` measures the server's pipeline (``server.photo``) alone;
``benchmarks.photopage`` measures the same photos through the whole page in a browser.
"""

import argparse
import io
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from model_store.datasets import load_idx, mnist_dir_from_env

PHOTO_SIZE = (480, 640)  # width, height: a phone photo after the page's scaling


def _paper(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """``(H, W, 3)`` float32 paper in [0, 1]: tint, grain, perhaps lines."""
    white = rng.uniform(0.88, 1.0)
    tint = np.float32(white) * np.array([1.0, rng.uniform(0.97, 1.0), rng.uniform(0.85, 1.0)], dtype=np.float32)
    grain = rng.normal(0.0, 0.012, (height // 4, width // 4)).astype(np.float32)
    grain = cv2.resize(grain, (width, height), interpolation=cv2.INTER_CUBIC)
    paper = tint[None, None, :] + grain[:, :, None] + rng.normal(0.0, 0.006, (height, width, 1)).astype(np.float32)
    kind = rng.integers(3)
    if kind:  # squared (1) or ruled (2) paper, faint blue-grey lines
        step = int(rng.integers(22, 40))
        colour = np.array([0.55, 0.65, 0.85], dtype=np.float32)
        strength = rng.uniform(0.15, 0.35)
        lines = np.zeros((height, width), dtype=np.float32)
        lines[int(rng.integers(step))::step, :] = 1.0
        if kind == 1:
            lines[:, int(rng.integers(step))::step] = 1.0
        lines = cv2.GaussianBlur(lines, (0, 0), 0.7) * strength
        paper = paper * (1 - lines[:, :, None]) + colour * lines[:, :, None]
    return paper


def _digit_ink(digit: np.ndarray, rng: np.random.Generator, side: int) -> np.ndarray:
    """``(side, side)`` float32 ink coverage in [0, 1] of a 28×28 uint8 MNIST digit, upscaled, perhaps thinner."""
    ink = cv2.resize(digit.astype(np.float32) / 255.0, (side, side), interpolation=cv2.INTER_CUBIC)
    ink = np.clip(ink, 0.0, 1.0)
    if rng.random() < 0.5:  # a thinner pen: erode by up to a third of MNIST's stroke
        radius = max(1, int(side / 28 * rng.uniform(0.3, 0.8)))
        ink = cv2.erode(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    # A pen lays ink or not: sharpen the scan's soft edges, keep some softness.
    return np.clip((ink - 0.25) * 2.0, 0.0, 1.0)


def make_photo(digit: np.ndarray, seed: int) -> bytes:
    """A JPEG photo (480 × 640) of ``digit`` (28×28 uint8, MNIST layout) written on paper; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    image = _paper(rng, width, height)
    side = int(height * rng.uniform(0.22, 0.55) * 28 / 20)  # the digit's 20-px box → its share of the height
    ink = _digit_ink(digit, rng, side)
    pens = [np.array([0.08, 0.08, 0.10]), np.array([0.10, 0.18, 0.55]), np.array([0.35, 0.35, 0.38])]
    pen = pens[int(rng.integers(len(pens)))].astype(np.float32)
    strength = rng.uniform(0.75, 1.0)
    centre = (rng.uniform(0.35, 0.65) * width, rng.uniform(0.35, 0.65) * height)
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), rng.uniform(-12, 12), 1.0)
    rotation[:, 2] += (centre[0] - side / 2, centre[1] - side / 2)
    placed = cv2.warpAffine(ink, rotation, (width, height), flags=cv2.INTER_LINEAR) * strength
    image = image * (1 - placed[:, :, None]) + pen * placed[:, :, None]
    # Perspective: the sheet seen a little from the side.
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    moved = corners + rng.uniform(-0.06, 0.06, (4, 2)).astype(np.float32) * np.float32([width, height])
    image = cv2.warpPerspective(image, cv2.getPerspectiveTransform(corners, moved), (width, height),
                                borderMode=cv2.BORDER_REFLECT)
    # Light: brightness, gradient, vignette, perhaps a shadow.
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    along = (xs / width - 0.5) * np.cos(angle) + (ys / height - 0.5) * np.sin(angle)
    gradient = 1 + rng.uniform(-0.3, 0.3) * along * 2
    vignette = 1 - rng.uniform(0.0, 0.25) * (((xs / width - 0.5) ** 2 + (ys / height - 0.5) ** 2) * 2)
    light = rng.uniform(0.55, 1.1) * gradient * vignette
    if rng.random() < 1 / 3:
        shadow = np.zeros((height, width), dtype=np.float32)
        cv2.ellipse(shadow, (int(rng.uniform(0, width)), int(rng.uniform(0, height))),
                    (int(rng.uniform(0.3, 0.7) * width), int(rng.uniform(0.2, 0.5) * height)),
                    rng.uniform(0, 180), 0, 360, 1.0, -1)
        shadow = cv2.GaussianBlur(shadow, (0, 0), rng.uniform(15, 40))
        light = light * (1 - rng.uniform(0.25, 0.5) * shadow)
    image = image * light[:, :, None]
    # Optics and sensor.
    sigma = rng.uniform(0.0, 2.2)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    if rng.random() < 0.25:
        length = int(rng.integers(3, 9))
        kernel = np.zeros((length, length), dtype=np.float32)
        kernel[length // 2, :] = 1.0 / length
        rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1.0)
        kernel = cv2.warpAffine(kernel, rotation, (length, length))
        image = cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6))
    image = image * 255.0 + rng.normal(0.0, rng.uniform(2, 7), image.shape)
    rgb = np.uint8(np.clip(image, 0, 255))
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(rng.integers(55, 91)))
    return buffer.getvalue()


def photo_set(n: int, seed: int = 0, mnist_dir: Path | None = None) -> list[tuple[bytes, int]]:
    """``n`` photos of official test digits (a seeded sample), each with its label."""
    directory = mnist_dir or mnist_dir_from_env()
    if directory is None:
        raise SystemExit("the photo set needs the official MNIST test files: pass --mnist-dir DIR or set MNIST_DIR")
    images, labels = load_idx(directory, "test")
    chosen = np.random.default_rng(seed).choice(len(labels), size=n, replace=False)
    digits = np.uint8(np.round(images * 255.0))  # load_idx gives float32 in [0, 1]
    return [(make_photo(digits[i], seed * 1_000_003 + int(i)), int(labels[i])) for i in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="photos (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="model name (default: the store's default)")
    parser.add_argument("--mnist-dir", type=Path, default=None)
    parser.add_argument("--save", type=Path, default=None, help="also write the photos as JPEG files here")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    import torch

    from model_store import load_model
    from server.photo import PhotoError, prepare_photo

    torch.set_num_threads(1)
    model = load_model(args.model)
    photos = photo_set(args.n, args.seed, args.mnist_dir)
    correct, refused, started = 0, {}, time.perf_counter()
    for index, (jpeg, label) in enumerate(photos):
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"{index:04d}-{label}.jpg").write_bytes(jpeg)
        try:
            image = prepare_photo(jpeg)
        except PhotoError as error:
            refused[error.code.value] = refused.get(error.code.value, 0) + 1
            continue
        with torch.no_grad():
            logits = model(torch.from_numpy(image.astype(np.float32) / 255.0).reshape(1, -1))
        correct += int(logits.argmax()) == label
    figures = {"n": args.n, "correct": correct, "accuracy": correct / args.n, "refused": refused,
               "ms_per_photo": (time.perf_counter() - started) * 1000 / args.n}
    print(json.dumps(figures) if args.json else
          f"{correct}/{args.n} read correctly ({100 * correct / args.n:.1f} %), refused {refused}, "
          f"{figures['ms_per_photo']:.1f} ms a photo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
