"""The live frame of an MLP in NumPy: LRP and CRP of a batch of drawings with no torch call.

While a visitor draws, every frame asks the same small things of the
784-H-10 network: the forward pass, the edge messages ``R(j→c)`` and one
selected map (mode ``lrp``, ``crp``, ``hidden`` or ``contrast``,
:mod:`server.explain.modes`), or none (an on-pause method still waiting).
That is two or three products of a ``(B, 784)`` by a ``784 × H`` matrix, a
few microseconds of arithmetic a frame; through torch it cost ~60 small
operations of ~5 µs each, most of a frame at batch 1.  :class:`LiveLane`
computes the same numbers as :class:`server.explain.fast.FastBackend`, from
the same closed forms (:func:`server.explain.fast.closed_form`) in the same
precision (``DTYPE``), in NumPy:

- an ε group's denominator ``W x + b`` *is* the forward pass's
  pre-activation, so it is reused, not computed again;
- the starts of every mode are written with one indexed assignment per mode,
  and the selected maps and, for CRP, the class's own LRP map (its scale,
  ``class_max_abs``) come from one matrix product.

The engine sends a batch here when every request is an LRP-family map or no
map at all (:meth:`LiveLane.covers`); everything else (captum methods, all
maps, sanity) goes through the torch backend.  Tests hold the two equal.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .fast import FastBackend, ShareGroup
from .modes import Mode
from .rules import EPSILON, RULES, SILENT_NEURON_RULE


@dataclass(frozen=True)
class Group:
    """A :class:`~server.explain.fast.ShareGroup` as float64 arrays.

    ``den_weight_t``: ``(n_in, n_out)``, or ``None`` where the denominator is the forward pass's own
    pre-activation (an ε group on the layer's weights), which the caller passes instead.
    """

    numerator: np.ndarray
    constant: np.ndarray | None
    den_weight_t: np.ndarray | None
    den_bias: np.ndarray
    epsilon: float


def _group(group: ShareGroup, weight: object, bias: object) -> Group:
    forward = group.den_weight is weight and group.den_bias is bias
    return Group(group.numerator.numpy(), None if group.constant is None else group.constant.numpy(),
                 None if forward else np.ascontiguousarray(group.den_weight.numpy().T), group.den_bias.numpy(),
                 group.epsilon)


def _inverse(group: Group, x: np.ndarray, pre_activation: np.ndarray) -> np.ndarray:
    """``1 / stab(D x + d)`` (``zennit.core.stabilize``: ``z ± ε`` away from 0), ``(B, n_out)``."""
    z = pre_activation if group.den_weight_t is None else x @ group.den_weight_t + group.den_bias
    return 1.0 / np.where(z >= 0, z + group.epsilon, z - group.epsilon)


def _propagate(groups: Sequence[Group], x: np.ndarray, pre_activation: np.ndarray,
               start: np.ndarray) -> np.ndarray:
    """Lower relevance ``(B, n_in)`` of the upper relevance ``start (B, n_out)``: ``Σ_g x ⊙ (Aᵀ s) + Cᵀ s``."""
    lower = np.zeros_like(x)
    for group in groups:
        scaled = start * _inverse(group, x, pre_activation)
        lower += x * (scaled @ group.numerator)
        if group.constant is not None:
            lower += scaled @ group.constant
    return lower


@dataclass(frozen=True)
class LiveArrays:
    """One batch's relevance, float64: ``edges (B, H, 10)``, the selected ``maps (B, 784)`` (zeros where none
    is asked) and each map's ``class_max_abs (B,)``."""

    edges: np.ndarray
    maps: np.ndarray
    class_max_abs: np.ndarray


class LiveLane:
    """The per-frame numbers of :class:`~server.explain.fast.FastBackend`'s model, in NumPy.

    Every preset of :data:`server.explain.rules.RULES` is ε on ``fc2``, so the
    edges are one formula; a preset changes only the ``fc1`` groups.  The backend's
    closed forms must be complete (its ``_forms`` hold every preset).
    """

    def __init__(self, backend: FastBackend) -> None:
        self.w1_t = np.ascontiguousarray(backend.w1.numpy().T)  # (784, H)
        self.b1 = backend.b1.numpy()
        self.w2 = backend.w2.numpy()  # (10, H)
        self.w2_t = np.ascontiguousarray(self.w2.T)
        self.b2 = backend.b2.numpy()
        # The presets with ε on fc2 (all of RULES): the lane computes their edges in one formula.
        self.fc1 = {name: tuple(_group(group, backend.w1, backend.b1) for group in forms[0])
                    for name, forms in backend.forms.items() if RULES[name].layers["fc2"] == EPSILON}
        self.silent = tuple(_group(group, backend.w1, backend.b1) for group in backend.silent)
        self.epsilon = EPSILON.epsilon

    def covers(self, methods: Sequence[str], heatmaps: Sequence[bool], rules: Sequence[str]) -> bool:
        """Whether a batch of these requests is all LRP-family maps or no maps, under presets of the lane."""
        return all((method == "lrp" or not heatmap) and rule in self.fc1
                   for method, heatmap, rule in zip(methods, heatmaps, rules))

    def forward(self, x: np.ndarray, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``z1``, ``a``, ``logits`` of ``x (B, 784)`` float64 in [0, 1]; ``keep``: ``(B, H)`` 0/1 or ``None``."""
        z1 = x @ self.w1_t + self.b1
        a = np.maximum(z1, 0.0)
        if keep is not None:
            a *= keep
        return z1, a, a @ self.w2_t + self.b2

    def explain(self, x: np.ndarray, z1: np.ndarray, a: np.ndarray, logits: np.ndarray, rule: str,
                modes: Sequence[Mode], targets: Sequence[int], hidden: Sequence[int | None],
                versus: Sequence[int | None], heatmap: Sequence[bool]) -> LiveArrays:
        """Everything a live frame of each row needs, given its :meth:`forward` pass (``modes`` of
        :mod:`server.explain.modes`; a row without ``heatmap`` gets a zero map)."""
        # ε on fc2, each class started from its own logit: R(j→c) = a_j W2[c, j] z_c / stab(z_c).
        ratio = logits * (1.0 / np.where(logits >= 0, logits + self.epsilon, logits - self.epsilon))
        edges = a[:, :, None] * self.w2_t[None] * ratio[:, None, :]  # (B, H, 10)
        batch = len(x)
        start = np.zeros_like(z1)
        crp: list[int] = []
        alone: list[int] = []  # rows of mode hidden
        for mode in dict.fromkeys(modes):
            rows = [b for b in range(batch) if modes[b] == mode and heatmap[b]]
            if not rows:
                continue
            classes = [targets[b] for b in rows]
            units = _indices([hidden[b] for b in rows]) if mode in ("crp", "hidden") else None
            if mode == "lrp":
                start[rows] = edges[rows, :, classes]
            elif mode == "crp":
                start[rows, units] = edges[rows, units, classes]
                crp = rows
            elif mode == "hidden":
                start[rows, units] = z1[rows, units]
                alone = rows
            elif mode == "contrast":
                self._contrast(start, edges, rows, classes, [hidden[b] for b in rows],
                               _indices([versus[b] for b in rows]))
        silent = None
        if alone and RULES[rule].layers["fc1"] != SILENT_NEURON_RULE:
            # A silent neuron's map alone is ε whatever the preset (SILENT_NEURON_RULE).
            quiet = np.zeros(start.shape, dtype=bool)
            quiet[alone] = (z1[alone] <= 0) & (start[alone] != 0)
            if quiet.any():
                silent = np.where(quiet, start, 0.0)
                start[quiet] = 0.0
        # The class's own LRP map of each CRP row, in the same product: its max|R| is the CRP map's scale.
        if crp:
            start = np.concatenate([start, edges[crp, :, [targets[b] for b in crp]]])
        inputs, pre = (np.concatenate([x, x[crp]]), np.concatenate([z1, z1[crp]])) if crp else (x, z1)
        maps = _propagate(self.fc1[rule], inputs, pre, start)
        if silent is not None:
            maps[:batch] += _propagate(self.silent, x, z1, silent)
        class_max_abs = np.abs(maps).max(axis=1)
        class_max_abs[crp] = class_max_abs[batch:]
        return LiveArrays(edges, maps[:batch], class_max_abs[:batch])

    @staticmethod
    def _contrast(start: np.ndarray, edges: np.ndarray, rows: list[int], classes: list[int],
                  units: list[int | None], rivals: np.ndarray) -> None:
        """Contrast starts: ``R(j→c) − R(j→c′)`` over every unit, or over the selected unit alone."""
        whole = [k for k, unit in enumerate(units) if unit is None]
        alone = [k for k, unit in enumerate(units) if unit is not None]
        if whole:
            picked = [rows[k] for k in whole]
            start[picked] = edges[picked, :, [classes[k] for k in whole]] - edges[picked, :, rivals[whole]]
        if alone:
            picked, neurons = [rows[k] for k in alone], _indices([units[k] for k in alone])
            start[picked, neurons] = edges[picked, neurons, [classes[k] for k in alone]] - \
                edges[picked, neurons, rivals[alone]]


def _indices(values: Sequence[int | None]) -> np.ndarray:
    """Units or classes a mode needs, as an index array (a ``None`` among them is a caller's bug: TypeError)."""
    return np.array(values, dtype=np.intp)
