"""LRP and CRP on the 784-H-10 ReLU network in closed form: share matrices, no hooks.

Every rule preset of :mod:`server.explain.rules` is, on a Linear layer with
non-negative inputs, a linear map from upper to lower relevance whose
coefficients depend on the layer input only:

    R_in = Σ_g  x ⊙ (A_gᵀ s_g) + C_gᵀ s_g,   s_g = R_out / stab(D_g x + d_g)

with one or two groups ``g`` (two for αβ) and constant matrices ``A_g``,
``C_g``, ``D_g``, ``d_g`` (:func:`closed_form`).  Written as a share matrix
``S[k, i]`` (relevance of input ``i`` per unit of relevance at output ``k``),
``S2`` (10 × H, for ``fc2``) and ``S1`` (H × 784, for ``fc1``) give every
map of a drawing by matrix products:

- edges ``R(j→c) = S2[c, j] · y_c · [z_j > 0]`` (each class started from its
  logit, as CRP does; the ReLU passes relevance where the neuron is active);
- LRP map of class ``c``: ``Σ_j R(j→c) S1[j]``;
- CRP map for ``{'fc1': [j], 'y': [c]}``: ``R(j→c) S1[j]``;
- neuron ``j`` alone (CRP ``start_layer='fc1'``, started from ``z_j``): ``z_j S1[j]``,
  with ``S1`` of :data:`~server.explain.rules.SILENT_NEURON_RULE` (ε) if the
  neuron is silent (``z_j ≤ 0``);
- contrast of class ``c`` against ``c′``: the backward pass started from
  ``z_c e_c − z_c′ e_c′``, ``Σ_j (R(j→c) − R(j→c′)) S1[j]``; with a hidden
  neuron ``j`` as well, ``(R(j→c) − R(j→c′)) S1[j]`` (docs/explanations.md, "Contrast").

A knock-out (``keep``, 0 for a knocked-out hidden unit) forces those units'
outputs ``a_j`` to zero in the forward pass; every map above then follows from
that forward pass.

:func:`propagate` computes the products ``Σ_j r_j S[j]`` without forming
``S``; :func:`unit_maps` forms the rows ``r_j S[j]`` themselves.

Inputs are non-negative on both layers (pixels in [0, 1], ReLU outputs), so
the terms zennit computes on negative inputs (``x⁻`` in z⁺ and αβ) are zero and
left out.  Callers must pass pixels in [0, 1]; :class:`server.explain.engine.Engine`
checks that.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from model_store.architecture import linear_layer

from .forward import DTYPE, Forward, Relevance
from .modes import Start
from .rules import RULES, SILENT_NEURON_RULE, LayerRule, RuleInfo


@dataclass(frozen=True)
class ShareGroup:
    """One denominator group of a layer rule (shapes ``(n_out, n_in)``, ``(n_out,)``).

    ``R_in = x ⊙ (numeratorᵀ s) + constantᵀ s`` with
    ``s = R_out / stab(x @ den_weightᵀ + den_bias, epsilon)``.  ``numerator32``
    and ``constant32`` are float32 copies for :func:`unit_maps`.
    """

    numerator: torch.Tensor
    constant: torch.Tensor | None
    den_weight: torch.Tensor
    den_bias: torch.Tensor
    epsilon: float
    numerator32: torch.Tensor
    constant32: torch.Tensor | None


def share_group(numerator: torch.Tensor, constant: torch.Tensor | None, den_weight: torch.Tensor,
                den_bias: torch.Tensor, epsilon: float) -> ShareGroup:
    return ShareGroup(numerator, constant, den_weight, den_bias, epsilon, numerator.float(),
                      None if constant is None else constant.float())


def stabilize(z: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``z + ε·(sign z + [z = 0])`` as ``zennit.core.stabilize``, bit for bit: ``z ± ε`` away from 0."""
    return torch.where(z >= 0, z + epsilon, z - epsilon)


def closed_form(rule: LayerRule, weight: torch.Tensor, bias: torch.Tensor) -> tuple[ShareGroup, ...]:
    """The share groups of ``rule`` on a Linear layer ``(weight, bias)``; see :mod:`server.explain.rules`."""
    positive, negative = weight.clamp(min=0), weight.clamp(max=0)
    bias_positive, bias_negative = bias.clamp(min=0), bias.clamp(max=0)
    if rule.kind == "epsilon":
        return (share_group(weight, None, weight, bias, rule.epsilon),)
    if rule.kind == "gamma":
        boosted, boosted_bias = weight + rule.gamma * positive, bias + rule.gamma * bias_positive
        return (share_group(boosted, None, boosted, boosted_bias, rule.epsilon),)
    if rule.kind == "zplus":
        return (share_group(positive, None, positive, bias_positive, rule.epsilon),)
    if rule.kind == "alpha_beta":
        return (share_group(rule.alpha * positive, None, positive, bias_positive, rule.epsilon),
                share_group(-rule.beta * negative, None, negative, bias_negative, rule.epsilon))
    if rule.kind == "zbox":
        # Montavon et al. 2017, deep Taylor decomposition, z^B rule; the bias cancels in the denominator.
        low_out = rule.low * positive.sum(dim=1) + bias_positive
        high_out = rule.high * negative.sum(dim=1) + bias_negative
        constant = -(rule.low * positive + rule.high * negative)
        return (share_group(weight, constant, weight, bias - low_out - high_out, rule.epsilon),)
    raise ValueError(f"unknown LRP rule kind {rule.kind!r}")


def inverse_denominators(groups: Sequence[ShareGroup], x: torch.Tensor) -> list[torch.Tensor]:
    """``1 / stab(D_g x + d_g)`` per group, each ``(B, n_out)``."""
    return [stabilize(torch.addmm(g.den_bias, x, g.den_weight.T), g.epsilon).reciprocal_() for g in groups]


def unit_maps(groups: Sequence[ShareGroup], x: torch.Tensor, start: torch.Tensor, single: bool = False,
              inverses: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """``(B, n_out, n_in)``: the lower relevance of each output unit ``k`` started alone from ``start[b, k]``.

    ``R[b, k] = Σ_g start[b, k] / D_g[b, k] · (x[b] ⊙ A_g[k] + C_g[k])``, the
    rows of the share matrix scaled by ``start``.  The coefficients are always
    computed in ``DTYPE``; ``single=True`` runs the expansion, as large as the
    output, in float32, which halves its memory traffic and rounds each value
    by at most 1e-7 of itself.  ``inverses``: :func:`inverse_denominators` of
    ``groups`` and ``x`` if already at hand.
    """
    dtype = torch.float32 if single else DTYPE
    inputs = x.to(dtype)[:, None, :]
    maps = None
    for group, inverse in zip(groups, inverses or inverse_denominators(groups, x)):
        numerator, constant = (group.numerator32, group.constant32) if single else (group.numerator, group.constant)
        term = numerator[None] * inputs
        if constant is not None:
            term += constant[None]
        term *= (start * inverse).to(dtype)[:, :, None]
        maps = term if maps is None else maps.add_(term)
    return _summed(maps)


def propagate(groups: Sequence[ShareGroup], x: torch.Tensor, relevance: torch.Tensor,
              inverses: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Lower relevance ``(B, M, n_in)`` of ``M`` upper relevance vectors ``(B, M, n_out)`` per sample.

    ``inverses``: :func:`inverse_denominators` of ``groups`` and ``x`` if already at hand.
    """
    lower = None
    for group, inverse in zip(groups, inverses or inverse_denominators(groups, x)):
        scaled = relevance * inverse[:, None, :]
        term = x[:, None, :] * (scaled @ group.numerator)
        if group.constant is not None:
            term = term + scaled @ group.constant
        lower = term if lower is None else lower + term
    return _summed(lower)


def _summed(terms: torch.Tensor | None) -> torch.Tensor:
    """The sum over share groups, which :func:`closed_form` never leaves empty."""
    if terms is None:
        raise ValueError("a layer rule needs at least one share group")
    return terms


# The samples of one mode: rows, target classes, hidden neurons (None: every neuron), rival classes (None: no
# contrast).
_Rows = tuple[list[int], list[int], list[int | None], list[int | None]]


class FastBackend:
    """All maps of a batch of drawings from two share matrices, plain torch, no hooks.

    Parameters
    ----------
    model:
        ``Sequential(flatten, fc1, relu, fc2)``; its weights are copied as
        ``DTYPE``, the model itself is not kept.

    Attributes
    ----------
    forms:
        Each preset of :data:`~server.explain.rules.RULES`: the share groups of ``fc1`` and of ``fc2``.
    silent:
        The share groups of ``fc1`` under :data:`~server.explain.rules.SILENT_NEURON_RULE`.
    """

    def __init__(self, model: nn.Module) -> None:
        fc1, fc2 = linear_layer(model, "fc1"), linear_layer(model, "fc2")
        self.w1 = fc1.weight.detach().to(DTYPE)
        self.b1 = fc1.bias.detach().to(DTYPE)
        self.w2 = fc2.weight.detach().to(DTYPE)
        self.b2 = fc2.bias.detach().to(DTYPE)
        self.forms = {name: self._closed_forms(info) for name, info in RULES.items()}
        self.silent = closed_form(SILENT_NEURON_RULE, self.w1, self.b1)

    def _closed_forms(self, info: RuleInfo) -> tuple[tuple[ShareGroup, ...], tuple[ShareGroup, ...]]:
        return (closed_form(info.layers["fc1"], self.w1, self.b1),
                closed_form(info.layers["fc2"], self.w2, self.b2))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> Forward:
        """The forward pass of ``x (B, 784)`` of ``DTYPE`` in [0, 1]; ``keep``: see :class:`Forward`."""
        z1 = torch.addmm(self.b1, x, self.w1.T)
        a = z1.clamp(min=0) if keep is None else z1.clamp(min=0) * keep
        return Forward(x, z1, a, torch.addmm(self.b2, a, self.w2.T), keep)

    def edges(self, forward: Forward, rule: str) -> torch.Tensor:
        """``(B, H, 10)`` relevance message ``R(j→c)``, each class started from its own logit."""
        fc2 = self.forms[rule][1]
        messages = unit_maps(fc2, forward.a, forward.logits).transpose(1, 2)  # (B, H, 10)
        if any(group.constant is not None for group in fc2):
            # The ReLU passes nothing to inactive (or knocked-out) neurons; only a constant (ZBox) term
            # could give them some.
            messages = messages * (forward.a > 0).to(messages)[:, :, None]
        return messages

    def relevance(
        self, forward: Forward, rule: str, starts: Sequence[Start | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges ``(B, H, 10)`` (:meth:`edges`) and one selected map per sample ``(B, 784)``.

        A ``None`` start asks for no map: its row is zeros.
        """
        edges = self.edges(forward, rule)
        # Index lists per mode, so that a batch costs one indexed copy per mode, not B.
        by_mode: dict[tuple[str, bool], _Rows] = {}
        for b, selected in enumerate(starts):
            if selected is not None:
                rows, classes, neurons, rivals = by_mode.setdefault(
                    (selected.mode, selected.hidden is None), ([], [], [], []))
                rows.append(b)
                classes.append(selected.target)
                neurons.append(selected.hidden)
                rivals.append(selected.versus)
        start = torch.zeros_like(forward.z1)
        for (mode, every_neuron), (rows, classes, neurons, rivals) in by_mode.items():
            match mode:
                case "lrp":
                    start[rows] = edges[rows, :, classes]
                case "crp":
                    start[rows, neurons] = edges[rows, neurons, classes]
                case "hidden":
                    start[rows, neurons] = forward.z1[rows, neurons]
                case "contrast" if every_neuron:
                    start[rows] = edges[rows, :, classes] - edges[rows, :, rivals]
                case "contrast":
                    start[rows, neurons] = edges[rows, neurons, classes] - edges[rows, neurons, rivals]
        silent = None if RULES[rule].layers["fc1"] == SILENT_NEURON_RULE else \
            self._silent_start(start, by_mode.get(("hidden", False)), forward)
        maps = propagate(self.forms[rule][0], forward.x, start[:, None, :])[:, 0]
        if silent is not None:
            maps += propagate(self.silent, forward.x, silent[:, None, :])[:, 0]
        return edges, maps

    @staticmethod
    def _silent_start(start: torch.Tensor, hidden: _Rows | None, forward: Forward) -> torch.Tensor | None:
        """The start of the silent neurons alone, moved out of ``start`` (in place); ``None`` if there are none."""
        if hidden is None:
            return None
        rows, _, neurons, _ = hidden
        is_silent = forward.z1[rows, neurons] <= 0
        if not is_silent.any():
            return None
        silent = torch.zeros_like(start)
        silent_rows = [row for row, flag in zip(rows, is_silent.tolist()) if flag]
        silent_neurons = [j for j, flag in zip(neurons, is_silent.tolist()) if flag]
        silent[silent_rows, silent_neurons] = start[silent_rows, silent_neurons]
        start[silent_rows, silent_neurons] = 0.0
        return silent

    def explain(self, forward: Forward, rule: str, starts: Sequence[Start | None]) -> Relevance:
        """:meth:`relevance`; a dense network has no channels."""
        edges, maps = self.relevance(forward, rule, starts)
        return Relevance(edges, maps, {})

    def all_maps(self, forward: Forward, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All class maps ``(B, 10, 784)`` (``DTYPE``) and all hidden-neuron maps ``(B, H, 784)`` (float32)."""
        fc1 = self.forms[rule][0]
        inverses = inverse_denominators(fc1, forward.x)
        classes = propagate(fc1, forward.x, self.edges(forward, rule).transpose(1, 2), inverses)
        if RULES[rule].layers["fc1"] == SILENT_NEURON_RULE:
            return classes, unit_maps(fc1, forward.x, forward.z1, single=True, inverses=inverses)
        active = forward.z1 > 0
        hidden = unit_maps(fc1, forward.x, forward.z1 * active, single=True, inverses=inverses)
        if not active.all():
            hidden += unit_maps(self.silent, forward.x, forward.z1 * ~active, single=True)
        return classes, hidden
