"""Accuracy and confusion matrix of a model on a labelled digit set, as drawn or redrawn as pen strokes."""

from collections.abc import Callable, Sequence
from typing import TypedDict

import numpy as np
import torch
from torch import nn

from .strokes import Stroke, image_to_strokes

# How the pen-stroke accuracy is measured (tests/test_raster.py, the README, the manifest's
# ``pen_stroke``): each digit skeletonised into strokes (model_store.strokes), drawn at a random
# size of this range (canvas fractions) at a random position, and rasterised as the server does.
REDRAW_SIZES = (0.1, 1.0)
REDRAW_SEED = 2024
REDRAWN_TEST_DIGITS = 1000


class Evaluation(TypedDict):
    """What :func:`evaluate` returns."""

    n: int
    accuracy: float
    confusion: list[list[int]]


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Return ``{"n", "accuracy", "confusion"}``; ``confusion[true][predicted]`` counts.

    ``images`` ``(N, 28, 28)`` float in [0, 1], ``labels`` ``(N,)`` int in 0–9.
    """
    with torch.no_grad():
        # (N, 1, 28, 28): what a convolution takes; the MLP flattens it
        predicted = model(torch.from_numpy(images).float().unsqueeze(1)).argmax(1).numpy()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        "confusion": confusion.tolist(),
    }


def _redraw_one(image: np.ndarray, rng: np.random.Generator,
                rasterize: Callable[[Sequence[Stroke]], np.ndarray]) -> np.ndarray:
    """``image`` as pen strokes at a random size and position of the canvas, rasterised by ``rasterize``."""
    size = rng.uniform(*REDRAW_SIZES)
    x, y = rng.uniform(0.0, 1.0 - size, size=2)
    return rasterize(image_to_strokes(image, size, (float(x), float(y))))


def redraw(images: np.ndarray, rasterize: Callable[[Sequence[Stroke]], np.ndarray],
           seed: int = REDRAW_SEED) -> np.ndarray:
    """Each of ``images`` ``(N, 28, 28)`` turned into pen strokes at a random size and position and
    rasterised again by ``rasterize`` (``server.raster.rasterize``: the live pipeline); ``(N, 28, 28)``
    float32 in [0, 1].  The draws depend on ``seed`` and ``N`` only."""
    rng = np.random.default_rng(seed)
    return np.stack([_redraw_one(image, rng, rasterize) for image in images]).astype(np.float32)


def redrawn_test_sample(images: np.ndarray, labels: np.ndarray, rasterize: Callable[[Sequence[Stroke]], np.ndarray],
                        n: int = REDRAWN_TEST_DIGITS) -> tuple[np.ndarray, np.ndarray]:
    """The pen-stroke test set: ``n`` of the official test digits chosen under :data:`REDRAW_SEED` and
    redrawn exactly as ``tests/test_raster.py`` does (one generator for the choice and the draws)."""
    rng = np.random.default_rng(REDRAW_SEED)
    chosen = rng.choice(len(images), n, replace=False)
    redrawn = np.stack([_redraw_one(images[index], rng, rasterize) for index in chosen]).astype(np.float32)
    return redrawn, labels[chosen]
