"""Neuron cards: what hidden neuron ``j`` of a model looks for, from the embedded training digits.

A card holds the neuron's incoming weight template ``W1[j]`` and the
``TOP_K`` embedded digits (``model_store.datasets.load_embedded``: 5,000
training digits, 500 per class) with the largest activation of ``j`` and
with the largest relevance ``R_j`` for their own predicted class (ε rule,
the engine's ``hidden_relevance``).  The scan over all digits is done once
per model, on an engine thread, and cached; each card is then a lookup.
"""

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_store.datasets import load_embedded
from model_store.sizes import IMAGE_SHAPE
from server.explain.engine import Request, Selection

from .frames import encode_f32, encode_u8

TOP_K = 8
SCAN_CHUNK = 250  # digits per engine call while scanning: bounds the engine's working memory
SCAN_RULE = "epsilon"


@dataclass(frozen=True)
class NeuronScan:
    """Per-digit results of one model over the embedded digits.

    ``activations``, ``relevance``: ``(N, H)`` float32; ``weights``: ``(H, 784)`` float32 ``W1``.
    """

    activations: np.ndarray
    relevance: np.ndarray
    weights: np.ndarray


class Digits:
    """The embedded digits, loaded on first use: ``images (N, 28, 28)`` float32 in [0, 1], ``labels (N,)``."""

    def __init__(self) -> None:
        self.data: tuple[np.ndarray, np.ndarray] | None = None
        self.lock = threading.Lock()

    def get(self) -> tuple[np.ndarray, np.ndarray]:
        """The digits; the first caller of any thread loads them (0.3 s), the others wait."""
        with self.lock:
            if self.data is None:
                self.data = load_embedded()
            return self.data


ScanPart = tuple[np.ndarray, np.ndarray]


def scan_chunks(images: np.ndarray) -> list[np.ndarray]:
    """``images`` in chunks of ``SCAN_CHUNK``: one engine call each (each within the compute deadline)."""
    return [images[start:start + SCAN_CHUNK] for start in range(0, len(images), SCAN_CHUNK)]


def scan_chunk(engine: Any, images: np.ndarray) -> ScanPart:
    """Activations and own-class ε relevances ``(n, H)`` float32 of the digits ``images``."""
    frames = engine.explain([Request(image, Selection(None, None), method="lrp", rule=SCAN_RULE)
                             for image in images])
    return (np.stack([np.asarray(frame.activations, dtype=np.float32) for frame in frames]),
            np.stack([np.asarray(frame.hidden_relevance, dtype=np.float32) for frame in frames]))


def scan(parts: list[ScanPart], weights: np.ndarray) -> NeuronScan:
    """The scan of every digit from its chunks' parts, in order."""
    return NeuronScan(np.concatenate([part[0] for part in parts]), np.concatenate([part[1] for part in parts]),
                      weights.astype(np.float32))


def _top(values: np.ndarray, images: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """The ``TOP_K`` digits with the largest ``values`` (``(N,)``), largest first; ties by index."""
    order = np.lexsort((np.arange(len(values)), -values))[:TOP_K]
    return [{"index": int(i), "label": int(labels[i]), "value": float(values[i]), "image": encode_u8(images[i])}
            for i in order]


def card(model: str, neuron: int, result: NeuronScan, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The JSON card of hidden neuron ``neuron`` (docs/protocol.md, "Neuron card")."""
    return {
        "model": model,
        "hidden": neuron,
        "weights": encode_f32(result.weights[neuron].reshape(IMAGE_SHAPE)),
        "top_activation": _top(result.activations[:, neuron], images, labels),
        "top_relevance": _top(result.relevance[:, neuron], images, labels),
    }
