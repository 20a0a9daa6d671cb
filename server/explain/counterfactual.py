"""Counterfactual: a nearby drawing that the model reads as another class c′ and that looks like a c′.

A *native guide* (Keane & Smyth 2020, "Good Counterfactuals and Where to Find
Them: A Case-Based Technique for Generating Counterfactuals for Explainable AI"):
the drawing takes over, pixel by pixel, the ink of a real handwritten digit of
c′ until it is one, while a k-nearest-neighbour prior over the embedded
training digits (the data manifold, as in Van Looveren & Klaise 2019's
prototype term, here in pixel space) keeps it where real c′s lie.

For a drawing ``x0`` and a target class ``t``:

- **Prototypes**: the ``K`` training digits ``x_k`` of class ``t`` nearest to
  ``x0`` in pixel space (Euclidean), among those the model (with the visitor's
  knock-out) reads as ``t`` with ``p ≥ threshold``.  They come from the 5,000
  embedded digits of :func:`model_store.datasets.load_embedded`, never from the
  official test set.
- **Paths**: per prototype, the pixels in order of ``|x_k − x0|``, largest
  first (ties: the lower pixel index).  At step ``s`` of ``S`` the first
  ``⌈s·n_k / S⌉`` of the ``n_k`` pixels where they differ take the prototype's
  value: ink the target lacks is removed, ink it has is added, the strongest
  strokes first.  At step ``S`` the image *is* the prototype.
- **Accepted**: an image, quantised to bytes as it is sent, that the model
  reads as ``t`` with ``p ≥ threshold`` and that the *k-NN prior* reads as
  ``t``: at least ``agree`` of its ``neighbours`` nearest embedded digits
  (Euclidean on the 14 × 14 means of 2 × 2 pixel blocks: a quarter of the
  cost, and a little tolerant of a one-pixel shift) are ``t``s.  A path stops
  at its first accepted image.
- **Answer**: the accepted image of least change ``Σ|x − x0|``.  The search
  stops at the first step where no path still running has so small a change
  (along a path the change only grows), or after ``S`` steps.  Should no image
  be accepted, the answer is the image the model reads as ``t`` with the most
  agreeing neighbours (then the least change; every path ends on a prototype,
  which the model reads as ``t``), with ``plausible`` false.  So a search fails
  only when no prototype qualifies (e.g. with most hidden units knocked out).

There is no randomness and no clock in the search: the same drawing gives the
same answer on any machine and under any load.  The model is evaluated as
float32 numpy (an MLP's 784 × H × 10); a cnn's layers below ``fc1`` run in
torch (:class:`ConvFeatures`).
"""

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from model_store.architecture import linear_layer
from model_store.sizes import IMAGE_SHAPE, INPUT_SIZE, N_CLASSES

from .family import family_of


@dataclass(frozen=True)
class Objective:
    """What the answer must satisfy, and the search's budget (module docstring).

    ``threshold``: the model's probability of the target the answer must reach
    (on the image as sent); ``prototypes``: K, the real digits of the target
    whose ink the drawing may take; ``steps``: S, the steps of every path; the
    k-NN prior: ``agree`` of the ``neighbours`` nearest embedded digits must be
    the target, distances taken on ``pool × pool`` pixel means.  The defaults
    were chosen on official test digits 2,500–2,539 judged by a 5-NN over
    digits 0–2,499, never on the digits the benchmark reports
    (docs/explanations.md).  The search stops on its step count only, never on the wall
    clock (a server deadline may still end it, as a fault the answer names).
    """

    threshold: float = 0.9
    prototypes: int = 16
    steps: int = 40
    neighbours: int = 20
    agree: int = 18
    pool: int = 2


@dataclass(frozen=True)
class Counterfactual:
    """A found counterfactual.

    ``image``: ``(28, 28)`` float32 in [0, 1], multiples of 1/255 (as sent);
    ``probability``: the model's ``p(target)`` on ``image``;
    ``changed_ink``: ``Σ|x − x0| / (Σx + Σx0)`` in [0, 1] (0: unchanged, 1: no
    ink in common); ``agreeing``: how many of the ``neighbours`` nearest embedded
    digits are of the target; ``plausible``: the k-NN prior reads ``image`` as
    the target (``agreeing ≥ agree``); ``steps``: path steps run; ``compute_ms``:
    wall time.
    """

    image: np.ndarray
    target: int
    probability: float
    changed_ink: float
    agreeing: int
    plausible: bool
    steps: int
    compute_ms: float


class ConvFeatures:
    """A cnn's layers below ``fc1`` (its convolutions, ReLUs and max-pools) as a function of the pixels
    (torch, float32): what ``fc1`` reads instead of the pixels."""

    def __init__(self, model: nn.Module) -> None:
        names = [name for name, _ in model.named_children()]
        below = nn.Sequential(*(model.get_submodule(name) for name in names[:names.index("fc1")]))
        self.layers = copy.deepcopy(below).float().eval().requires_grad_(False)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``(R, F)`` features of ``x (R, 784)``."""
        with torch.no_grad():
            features: np.ndarray = self.layers(torch.from_numpy(x).reshape(-1, 1, *IMAGE_SHAPE)).numpy()
        return features


@dataclass(frozen=True)
class Network:
    """The model's dense weights as float32 numpy arrays, with a knock-out mask ``keep`` ``(H,)``;
    ``features``: what ``fc1`` reads of the pixels (a cnn's convolutions), ``None`` for the pixels themselves."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    keep: np.ndarray
    features: ConvFeatures | None = None

    def hidden(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``z1`` and ``a`` of ``x (R, 784)``."""
        z1 = (x if self.features is None else self.features(x)) @ self.w1.T + self.b1
        return z1, np.maximum(z1, 0.0) * self.keep

    def probabilities(self, a: np.ndarray) -> np.ndarray:
        """Softmax of the logits of hidden activations ``a (R, H)``."""
        logits = a @ self.w2.T + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        exp: np.ndarray = np.exp(logits)  # numpy types arithmetic on an ndarray of unstated dtype Any
        exp /= exp.sum(axis=1, keepdims=True)
        return exp


def changed_ink(image: np.ndarray, original: np.ndarray) -> float:
    """``Σ|x − x0| / (Σx + Σx0)``: the share of all ink involved that changed (0 when both are blank)."""
    total = float(image.sum() + original.sum())
    return float(np.abs(image - original).sum()) / total if total > 0 else 0.0


def quantise(images: np.ndarray) -> np.ndarray:
    """``images`` rounded to multiples of 1/255, as the ``counterfactual`` message sends them (u8)."""
    rounded: np.ndarray = np.rint(images * 255.0) / np.float32(255.0)
    return rounded.astype(np.float32)


def pool(images: np.ndarray, size: int) -> np.ndarray:
    """The mean of every ``size × size`` block of each of ``images (R, 784)``: ``(R, (28 / size)²)`` float32."""
    side = IMAGE_SHAPE[0] // size
    blocks = images.reshape(len(images), side, size, side, size)
    pooled: np.ndarray = blocks.mean(axis=(2, 4), dtype=np.float32).reshape(len(images), side * side)
    return pooled


class Paths:
    """The path from a drawing to each prototype: which pixels take the prototype's value at each step.

    ``x0 (1, 784)``, ``prototypes (K, 784)`` float32 in [0, 1]; ``steps``: S.
    """

    def __init__(self, x0: np.ndarray, prototypes: np.ndarray, steps: int) -> None:
        self.x0, self.prototypes, self.steps = x0, prototypes, steps
        difference = np.abs(prototypes - x0)
        self.order = np.argsort(-difference, axis=1, kind="stable")  # largest change first, ties by pixel
        self.differing = (difference > 0).sum(axis=1)

    def at(self, step: int, rows: np.ndarray) -> np.ndarray:
        """The images ``(len(rows), 784)`` of the paths ``rows`` at ``step`` (1 … S), quantised."""
        counts = -(-self.differing[rows] * step // self.steps)  # ⌈s·n_k / S⌉
        taken = np.arange(INPUT_SIZE)[None, :] < counts[:, None]
        replaced = np.zeros((len(rows), INPUT_SIZE), dtype=bool)
        np.put_along_axis(replaced, self.order[rows], taken, axis=1)
        return quantise(np.where(replaced, self.prototypes[rows], self.x0))


@dataclass
class _Seen:
    """The best image so far, by ``key`` (lower is better): accepted images by change, the others by
    (fewer agreeing neighbours, change)."""

    key: tuple[float, float] = (np.inf, np.inf)
    image: np.ndarray | None = None
    probability: float = 0.0
    agreeing: int = 0

    def offer(self, key: tuple[float, float], image: np.ndarray, probability: float, agreeing: int) -> None:
        if key < self.key:
            self.key, self.image, self.probability, self.agreeing = key, image, probability, agreeing


class CounterfactualSearch:
    """Counterfactuals for one model, with the training digits' activations precomputed.

    Parameters
    ----------
    model:
        A store model of either family; its weights are copied (a cnn's layers below ``fc1`` as
        :class:`ConvFeatures`), the model is not kept.
    images, labels:
        Training digits ``(N, 28, 28)`` in [0, 1] and their classes (the embedded 5,000): the prototypes
        and the k-NN prior.  Float32 ``images`` are kept as they are, not copied: they must not change
        afterwards.
    objective:
        The acceptance rule and the budget; see :class:`Objective`.

    Read-only after construction: one instance may serve several threads.
    """

    def __init__(self, model: nn.Module, images: np.ndarray, labels: np.ndarray,
                 objective: Objective = Objective()) -> None:
        fc1, fc2 = linear_layer(model, "fc1"), linear_layer(model, "fc2")
        self.w1, self.b1 = fc1.weight.detach().float().numpy().copy(), fc1.bias.detach().float().numpy().copy()
        self.w2, self.b2 = fc2.weight.detach().float().numpy().copy(), fc2.bias.detach().float().numpy().copy()
        self.hidden = len(self.b1)
        self.features = ConvFeatures(model) if family_of(model).conv_layers else None
        self.objective = objective
        # A view of ``images`` when they are float32 (the shared embedded digits), not a copy per model.
        self.images = np.asarray(images, dtype=np.float32).reshape(len(images), INPUT_SIZE)
        self.labels = np.asarray(labels)
        self.pooled = pool(self.images, objective.pool)
        self.squared_norms = (self.pooled ** 2).sum(axis=1)
        _, activations = self.network().hidden(self.images)
        self.by_class = [(np.flatnonzero(self.labels == c), activations[self.labels == c])
                         for c in range(N_CLASSES)]

    def network(self, knockout: tuple[int, ...] = ()) -> Network:
        """The network with the hidden units ``knockout`` forced to zero."""
        keep = np.ones(self.hidden, dtype=np.float32)
        keep[list(knockout)] = 0.0
        return Network(self.w1, self.b1, self.w2, self.b2, keep, self.features)

    def find(self, image: np.ndarray, target: int, knockout: tuple[int, ...] = ()) -> Counterfactual | None:
        """The counterfactual of ``image`` ``(28, 28)`` in [0, 1] for class ``target``, or ``None`` if no
        training digit of ``target`` qualifies as a prototype.  ``knockout``: hidden units forced to zero."""
        started = time.perf_counter()
        objective, network = self.objective, self.network(knockout)
        x0 = image.reshape(1, INPUT_SIZE).astype(np.float32)
        prototypes = self.prototypes(network, x0, target)
        if not len(prototypes):
            return None
        paths = Paths(x0, prototypes, objective.steps)
        running = np.arange(len(prototypes))
        accepted, fallback = _Seen(), _Seen()
        steps = 0
        for steps in range(1, objective.steps + 1):
            images = paths.at(steps, running)
            _, a = network.hidden(images)
            probabilities = network.probabilities(a)[:, target]
            read = probabilities >= objective.threshold
            agreeing = np.zeros(len(images), dtype=np.int64)  # the prior only matters where the model reads t
            agreeing[read] = self.agreeing(images[read], target) if read.any() else agreeing[:0]
            changes = np.abs(images - x0).sum(axis=1)
            plausible = read & (agreeing >= objective.agree)
            for row in np.flatnonzero(read):
                seen = accepted if plausible[row] else fallback
                key = (float(changes[row]), 0.0) if plausible[row] else (-float(agreeing[row]), float(changes[row]))
                seen.offer(key, images[row], float(probabilities[row]), int(agreeing[row]))
            still = ~plausible & (changes < accepted.key[0])  # a path's change only grows along it
            running = running[still]
            if not len(running):
                break
        seen = accepted if accepted.image is not None else fallback
        if seen.image is None:  # every path ends on a prototype, read as t when chosen: only float32 rounding
            return None         # at the threshold between the batch that chose it and this one could get here
        return Counterfactual(seen.image.reshape(IMAGE_SHAPE), target, seen.probability,
                              changed_ink(seen.image, x0[0]), seen.agreeing, seen is accepted, steps,
                              (time.perf_counter() - started) * 1000.0)

    def prototypes(self, network: Network, x0: np.ndarray, target: int) -> np.ndarray:
        """The ``K`` training digits ``(K', 784)`` of ``target`` nearest to ``x0 (1, 784)`` in pixel space
        that the model reads as ``target`` with ``p ≥ threshold`` (``K' ≤ K``), nearest first."""
        indices, activations = self.by_class[target]
        read = network.probabilities(activations * network.keep)[:, target] >= self.objective.threshold
        candidates = indices[read]
        distances = ((self.images[candidates] - x0) ** 2).sum(axis=1)
        order = np.argsort(distances, kind="stable")[:self.objective.prototypes]
        return self.images[candidates[order]]

    def agreeing(self, images: np.ndarray, target: int) -> np.ndarray:
        """How many of the ``neighbours`` training digits nearest to each of ``images (R, 784)`` (Euclidean on
        :func:`pool`'s block means) are of class ``target``: the k-NN prior, ``(R,)`` int."""
        k = self.objective.neighbours
        distances = self.squared_norms[None, :] - 2.0 * (pool(images, self.objective.pool) @ self.pooled.T)
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        counts: np.ndarray = (self.labels[nearest] == target).sum(axis=1)
        return counts
