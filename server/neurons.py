"""Neuron cards: what hidden neuron ``j`` of a model looks for, from the embedded training digits.

A card holds the neuron's incoming weight template ``W1[j]`` and the
``TOP_K`` embedded digits (``model_store.datasets.load_embedded``: 5,000
training digits, 500 per class) with the largest activation of ``j`` and
with the largest relevance ``R_j`` for their own predicted class (ε rule,
the engine's ``hidden_relevance``).  The scan over all digits is done once
per model, on an engine thread, and cached; each card is then a lookup.
Each reference digit comes with its own conditional heatmap, as zennit-crp's
reference samples show them (Achtibat et al. 2023): ``j``'s CRP map (ε rule)
for that digit's own predicted class, computed for the card (:func:`reference_maps`).
"""

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_store.datasets import load_embedded
from model_store.sizes import IMAGE_SHAPE
from server.explain.engine import Request, Selection

from .frames import encode_f32, encode_i8, encode_u8

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


def top_indices(values: np.ndarray) -> list[int]:
    """The ``TOP_K`` digits with the largest ``values`` (``(N,)``), largest first; ties by index."""
    return [int(i) for i in np.lexsort((np.arange(len(values)), -values))[:TOP_K]]


def card_digits(result: NeuronScan, neuron: int) -> tuple[list[int], list[int]]:
    """The card's reference digits of ``neuron``: (most activating, most relevant), indices into the digits."""
    return top_indices(result.activations[:, neuron]), top_indices(result.relevance[:, neuron])


def reference_maps(engine: Any, images: np.ndarray, neuron: int) -> np.ndarray:
    """``(n, 28, 28)`` float32: ``neuron``'s CRP map (ε) in each of ``images`` for that digit's predicted class.

    Two engine calls: the predictions, then the maps conditioned on ``fc1`` unit ``neuron`` and that class.
    """
    read = engine.explain([Request(image, Selection(None, None), method="lrp", rule=SCAN_RULE) for image in images])
    maps = engine.explain([Request(image, Selection(int(frame.prediction), neuron), method="lrp", rule=SCAN_RULE)
                           for image, frame in zip(images, read)])
    return np.stack([np.asarray(frame.heatmap, dtype=np.float32) for frame in maps])


def _entries(indices: list[int], values: np.ndarray, images: np.ndarray, labels: np.ndarray,
             maps: np.ndarray) -> list[dict[str, Any]]:
    return [{"index": i, "label": int(labels[i]), "value": float(values[i]), "image": encode_u8(images[i]),
             "heatmap": encode_i8(maps[k])} for k, i in enumerate(indices)]


def card(model: str, neuron: int, result: NeuronScan, images: np.ndarray, labels: np.ndarray,
         maps: np.ndarray) -> dict[str, Any]:
    """The JSON card of hidden neuron ``neuron`` (docs/protocol.md, "Neuron card").

    ``maps``: :func:`reference_maps` of the digits of :func:`card_digits`, most activating first.
    """
    activating, relevant = card_digits(result, neuron)
    return {
        "model": model,
        "hidden": neuron,
        "weights": encode_f32(result.weights[neuron].reshape(IMAGE_SHAPE)),
        "top_activation": _entries(activating, result.activations[:, neuron], images, labels, maps[:len(activating)]),
        "top_relevance": _entries(relevant, result.relevance[:, neuron], images, labels, maps[len(activating):]),
    }
