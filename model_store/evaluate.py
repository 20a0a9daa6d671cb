"""Accuracy and confusion matrix of a model on a labelled digit set."""

from typing import TypedDict

import numpy as np
import torch
from torch import nn


class Evaluation(TypedDict):
    """What :func:`evaluate` returns."""

    n: int
    accuracy: float
    confusion: list[list[int]]


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> Evaluation:
    """Return ``{"n", "accuracy", "confusion"}``; ``confusion[true][predicted]`` counts."""
    with torch.no_grad():
        predicted = model(torch.from_numpy(images).float()).argmax(1).numpy()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {
        "n": int(len(labels)),
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        "confusion": confusion.tolist(),
    }
