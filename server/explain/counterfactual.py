"""Counterfactual: a plausible nearby drawing the model reads as another class c′.

Prototype-guided counterfactuals after Van Looveren & Klaise 2019
("Interpretable Counterfactual Explanations Guided by Prototypes"), with the
network's hidden layer as the encoder, searched among *blends* of the drawing
with real digits so that every changed pixel comes from a real handwritten
digit of c′, never from an adversarial haze.

For a drawing ``x0`` and a target class ``t``, the prototypes are the ``K``
training digits ``x_k`` of class ``t`` whose hidden activations are nearest to
those of ``x0`` (the 5,000 embedded digits of
:func:`model_store.datasets.load_embedded`; never the official test set), kept
only if the model reads them as ``t`` with ``p ≥ threshold``.  Each prototype
defines one candidate ``x = x0 + m ⊙ (x_k − x0)`` with a mask ``m`` in
``[0, 1]^784`` (0: the visitor's pixel, 1: the real digit's), and the search
minimises, per candidate,

    L(m) = c · max(0, −log p_t(x) − κ)            (be read as t, with margin)
         + β · ‖m‖₁                               (change few pixels)
         + γ · Σ_(p~q) (m_p − m_q)²               (in connected patches)
         + θ · ‖a(x) − proto_t‖₂²                  (close to the digits of t inside the network)

where ``a(x)`` are the hidden activations (knocked-out units zero),
``proto_t`` the mean activation of the ``K`` prototypes, and ``p~q`` runs
over horizontally and vertically adjacent pixels.  The ink stays in
``[0, 1]`` because ``x`` is a convex blend of two images in ``[0, 1]``.

The optimiser is FISTA (proximal gradient with Nesterov momentum, Beck &
Teboulle 2009), as in the paper: a gradient step on the smooth terms, then
the exact proximal step of ``β‖m‖₁`` with the box ``[0, 1]`` (per pixel: soft
threshold, then clip).  Van Looveren & Klaise search ``c`` by bisection; here
``c`` doubles every ``check_every`` steps for each candidate not yet read as
``t``, and a candidate stops changing once it is: the first mask to get there
from ``m = 0`` is a sparse one.  At ``m = 1`` a candidate *is* its prototype,
which the model reads as ``t``.  The candidates run as one numpy batch
(float32; the network is 784 × H × 10).  The answer is the successful
candidate with the least ``β‖m‖₁ + γ·smoothness + θ·prototype`` loss,
checked on the image as sent (quantised to bytes).  Should no mask get
there, the even blends ``m = α·1`` (α = 0.1, 0.2, …, 1) are tried, the
least α first, so a search fails only when no prototype qualifies.  There is no randomness
and no clock in the search (it stops after ``steps`` iterations or once every candidate is
read as ``t``): the same drawing gives the same answer on any machine.
"""

import math
import time
from dataclasses import dataclass

import numpy as np
from torch import nn

from model_store.architecture import linear_layer
from model_store.sizes import IMAGE_SHAPE, INPUT_SIZE, N_CLASSES

BELOW_MARGIN = 1e6  # added to the loss of a mask read as the target only between threshold and margin


@dataclass(frozen=True)
class Objective:
    """The weights of the objective and the search budget (module docstring).

    ``threshold``: the probability of the target the answer must reach;
    ``margin_probability``: what the hinge aims at (above ``threshold``, so
    that quantising the image to bytes does not drop it below);
    ``prototypes``: K; ``c``: the first weight of the hinge, ``c_growth`` its
    factor every ``check_every`` steps while a candidate is not there, up to ``c_max``;
    ``steps``: FISTA iterations at most; ``step_size``: the gradient step.  The
    search stops on its step count only, never on the wall clock, so the same
    drawing gives the same answer on any machine and under any load (a server
    deadline may still end it, as a fault the answer names).
    """

    threshold: float = 0.9
    margin_probability: float = 0.995
    beta: float = 0.05
    gamma: float = 0.2
    theta: float = 0.05
    prototypes: int = 4
    c: float = 1.0
    c_growth: float = 2.0
    c_max: float = 1000.0
    check_every: int = 10
    steps: int = 300
    step_size: float = 0.05


@dataclass(frozen=True)
class Counterfactual:
    """A found counterfactual.

    ``image``: ``(28, 28)`` float32 in [0, 1], multiples of 1/255 (as sent);
    ``probability``: the model's ``p(target)`` on ``image``;
    ``changed_ink``: ``Σ|x − x0| / (Σx + Σx0)`` in [0, 1] (0: unchanged, 1: no
    ink in common); ``steps``: FISTA iterations run; ``compute_ms``: wall time.
    """

    image: np.ndarray
    target: int
    probability: float
    changed_ink: float
    steps: int
    compute_ms: float


@dataclass(frozen=True)
class Network:
    """The model's weights as float32 numpy arrays, with a knock-out mask ``keep`` ``(H,)``."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    keep: np.ndarray

    def hidden(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``z1`` and ``a`` of ``x (R, 784)``."""
        z1 = x @ self.w1.T + self.b1
        return z1, np.maximum(z1, 0.0) * self.keep

    def probabilities(self, a: np.ndarray) -> np.ndarray:
        """Softmax of the logits of hidden activations ``a (R, H)``."""
        logits = a @ self.w2.T + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        exp: np.ndarray = np.exp(logits)  # numpy types arithmetic on an ndarray of unstated dtype Any
        exp /= exp.sum(axis=1, keepdims=True)
        return exp


def smoothness(mask: np.ndarray) -> np.ndarray:
    """``Σ_(p~q) (m_p − m_q)²`` per row of ``mask (R, 784)``."""
    grid = mask.reshape(-1, *IMAGE_SHAPE)
    total: np.ndarray = (((grid[:, 1:] - grid[:, :-1]) ** 2).sum(axis=(1, 2))
                         + ((grid[:, :, 1:] - grid[:, :, :-1]) ** 2).sum(axis=(1, 2)))
    return total


def smoothness_gradient(mask: np.ndarray) -> np.ndarray:
    """Gradient of :func:`smoothness`: twice the grid graph's Laplacian of each row."""
    grid = mask.reshape(-1, *IMAGE_SHAPE)
    laplacian = np.zeros_like(grid)
    vertical = grid[:, 1:] - grid[:, :-1]
    horizontal = grid[:, :, 1:] - grid[:, :, :-1]
    laplacian[:, 1:] += vertical
    laplacian[:, :-1] -= vertical
    laplacian[:, :, 1:] += horizontal
    laplacian[:, :, :-1] -= horizontal
    return 2.0 * laplacian.reshape(len(mask), INPUT_SIZE)


def changed_ink(image: np.ndarray, original: np.ndarray) -> float:
    """``Σ|x − x0| / (Σx + Σx0)``: the share of all ink involved that changed (0 when both are blank)."""
    total = float(image.sum() + original.sum())
    return float(np.abs(image - original).sum()) / total if total > 0 else 0.0


class CounterfactualSearch:
    """Counterfactuals for one model, with the training digits' activations precomputed.

    Parameters
    ----------
    model:
        ``Sequential(flatten, fc1, relu, fc2)``; its weights are copied, the model is not kept.
    images, labels:
        Training digits ``(N, 28, 28)`` in [0, 1] and their classes (the embedded 5,000).  Float32
        ``images`` are kept as they are, not copied: they must not change afterwards.
    objective:
        Weights and budget; see :class:`Objective`.

    Read-only after construction: one instance may serve several threads.
    """

    def __init__(self, model: nn.Module, images: np.ndarray, labels: np.ndarray,
                 objective: Objective = Objective()) -> None:
        fc1, fc2 = linear_layer(model, "fc1"), linear_layer(model, "fc2")
        self.w1, self.b1 = fc1.weight.detach().float().numpy().copy(), fc1.bias.detach().float().numpy().copy()
        self.w2, self.b2 = fc2.weight.detach().float().numpy().copy(), fc2.bias.detach().float().numpy().copy()
        self.hidden = len(self.b1)
        self.objective = objective
        # A view of ``images`` when they are float32 (the shared embedded digits), not a copy per model.
        self.images = np.asarray(images, dtype=np.float32).reshape(len(images), INPUT_SIZE)
        activations = np.maximum(self.images @ self.w1.T + self.b1, 0.0)
        self.by_class = [(np.flatnonzero(labels == c), activations[labels == c]) for c in range(N_CLASSES)]

    def network(self, knockout: tuple[int, ...] = ()) -> Network:
        """The network with the hidden units ``knockout`` forced to zero."""
        keep = np.ones(self.hidden, dtype=np.float32)
        keep[list(knockout)] = 0.0
        return Network(self.w1, self.b1, self.w2, self.b2, keep)

    def find(self, image: np.ndarray, target: int, knockout: tuple[int, ...] = ()) -> Counterfactual | None:
        """The counterfactual of ``image`` ``(28, 28)`` in [0, 1] for class ``target``, or ``None`` if no
        training digit of ``target`` qualifies as a prototype.  ``knockout``: hidden units forced to zero."""
        started = time.perf_counter()
        objective, network = self.objective, self.network(knockout)
        x0 = image.reshape(1, INPUT_SIZE).astype(np.float32)
        prototypes, prototype = self.prototypes(network, x0, target)
        if not len(prototypes):
            return None
        direction = prototypes - x0
        mask = np.zeros_like(direction)
        momentum_mask, momentum = mask.copy(), 1.0
        weights = np.full((len(mask), 1), objective.c, dtype=np.float32)
        done = np.zeros(len(mask), dtype=bool)
        best = _Best(np.full(len(mask), np.inf, dtype=np.float32), np.zeros_like(mask), np.zeros(len(mask)))
        steps = 0
        for steps in range(1, objective.steps + 1):
            moved = self._step(momentum_mask, x0, direction, network, target, prototype, weights)
            moved[done] = mask[done]  # a candidate read as the target with the margin keeps its sparse mask
            momentum_next = (1.0 + math.sqrt(1.0 + 4.0 * momentum ** 2)) / 2.0  # a Python float: keeps float32
            momentum_mask = moved + ((momentum - 1.0) / momentum_next) * (moved - mask)
            mask, momentum = moved, momentum_next
            if steps % objective.check_every == 0:
                probabilities = self._record(best, x0, mask, direction, network, target, prototype)
                done |= probabilities >= objective.margin_probability
                weights[~done] = np.minimum(weights[~done] * objective.c_growth, objective.c_max)
                if done.all():
                    break
        self._record(best, x0, mask, direction, network, target, prototype)
        if not np.isfinite(best.loss).any():
            # No mask got there (the search oscillated): the even blends m = α·1 towards
            # each prototype, α = 0.1 … 1; at α = 1 a candidate is its prototype, which the model reads as t.
            for alpha in np.linspace(0.1, 1.0, 10, dtype=np.float32):
                self._record(best, x0, np.full_like(mask, alpha), direction, network, target, prototype)
                if np.isfinite(best.loss).any():
                    break
        winner = int(np.argmin(best.loss))
        if not np.isfinite(best.loss[winner]):
            return None
        image = x0[0] + best.mask[winner] * direction[winner]
        image = (np.rint(image * 255.0) / np.float32(255.0)).astype(np.float32)
        return Counterfactual(image.reshape(IMAGE_SHAPE), target, float(best.probability[winner]),
                              changed_ink(image, x0[0]), steps, (time.perf_counter() - started) * 1000.0)

    def prototypes(self, network: Network, x0: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``K`` training digits ``(K', 784)`` of ``target`` nearest to ``x0`` in hidden space that the
        model reads as ``target`` with ``p ≥ threshold`` (``K' ≤ K``), and their mean activation ``(1, H)``."""
        indices, activations = self.by_class[target]
        masked = activations * network.keep
        _, encoded = network.hidden(x0)
        read = network.probabilities(masked)[:, target] >= self.objective.threshold
        distances = np.where(read, ((masked - encoded) ** 2).sum(axis=1), np.inf)
        order = np.argsort(distances, kind="stable")[:self.objective.prototypes]
        order = order[np.isfinite(distances[order])]
        return self.images[indices[order]], masked[order].mean(axis=0, keepdims=True) if len(order) else masked[:0]

    def _step(self, mask: np.ndarray, x0: np.ndarray, direction: np.ndarray, network: Network, target: int,
              prototype: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """One proximal gradient step from ``mask`` for every candidate."""
        objective = self.objective
        z1, a = network.hidden(x0 + mask * direction)
        probabilities = network.probabilities(a)
        # d/dlogits of c·max(0, −log p_t − κ) is c·(p − onehot_t) where the hinge is active.
        active = probabilities[:, target] < objective.margin_probability
        d_logits = probabilities
        d_logits[:, target] -= 1.0
        d_logits *= weights * active[:, None]
        d_hidden = (d_logits @ network.w2 + 2.0 * objective.theta * (a - prototype)) * (z1 > 0) * network.keep
        gradient = (d_hidden @ network.w1) * direction + objective.gamma * smoothness_gradient(mask)
        moved: np.ndarray = mask - objective.step_size * gradient
        moved = np.clip(moved - objective.step_size * objective.beta, 0.0, 1.0)  # prox of β‖m‖₁ on m ≥ 0, box
        return moved

    def _record(self, best: "_Best", x0: np.ndarray, mask: np.ndarray, direction: np.ndarray, network: Network,
                target: int, prototype: np.ndarray) -> np.ndarray:
        """Keep each candidate's mask of least distance loss whose image, as sent (quantised to bytes), the
        model reads as ``target`` with ``p ≥ threshold``; return each candidate's ``p(target)`` now."""
        objective = self.objective
        images = np.rint((x0 + mask * direction) * 255.0) / np.float32(255.0)
        _, a = network.hidden(images)
        probabilities = network.probabilities(a)[:, target]
        loss = (objective.beta * mask.sum(axis=1) + objective.gamma * smoothness(mask)
                + objective.theta * ((a - prototype) ** 2).sum(axis=1))
        # A mask read with the margin beats any read only above the threshold (closer to the boundary).
        loss = loss + np.where(probabilities >= objective.margin_probability, 0.0, BELOW_MARGIN)
        better = (probabilities >= objective.threshold) & (loss < best.loss)
        best.loss[better], best.mask[better], best.probability[better] = loss[better], mask[better], \
            probabilities[better]
        return probabilities


@dataclass(frozen=True)
class _Best:
    """Per candidate: the least loss seen among successful masks, that mask, and its ``p(target)``."""

    loss: np.ndarray
    mask: np.ndarray
    probability: np.ndarray
