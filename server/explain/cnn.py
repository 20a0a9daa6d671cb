"""The cnn family: LRP and CRP on the LeNet of ``model_store.architecture.build_cnn``, plain torch, no hooks.

The rule presets are zennit's own named composites, each called after the
composite it equals (``zennit.composites``; every linear layer gets ε, the
activations pass relevance through, max-pooling is left to the gradient, so
relevance goes to each pool's winner):

==========================  ================  ==================  ===========
preset                      ``conv1``         ``conv2``           ``fc1``, ``fc2``
==========================  ================  ==================  ===========
``epsilon_gamma_box``       ZBox [0, 1]       γ = 0.25            ε
``epsilon_plus_flat``       flat              z⁺                  ε
``epsilon_alpha2_beta1_flat`` flat            α2β1                ε
``epsilon_plus``            z⁺                z⁺                  ε
==========================  ================  ==================  ===========

A convolution's rule is a linear layer's (:mod:`server.explain.rules`) with
the transposed convolution as ``Wᵀ``: ``R_in = x ⊙ convᵀ(R_out / stab(conv(x)))``.
The flat rule (Lapuschkin et al. 2019) replaces the weights and the input by
ones and drops the bias: each output spreads its relevance evenly over its 5×5
receptive field, whatever the ink.

Where a map starts (:class:`~server.explain.modes.Start`) is as for the MLP,
with ``fc1``'s units as the hidden layer; a start with ``layer`` ``conv1`` or
``conv2`` conditions the map on channel ``hidden`` of that layer (CRP with
``ChannelConcept``: the relevance at the layer's output is kept on that channel
only), started from the class (or contrast) relevance of every ``fc1`` unit.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model_store.architecture import CNN_CHANNELS, CNN_KERNEL, CNN_POOL, CNN_POOLED_PX
from model_store.sizes import IMAGE_PX, INPUT_SIZE, N_CLASSES

from .fast import closed_form, propagate, stabilize, unit_maps
from .forward import DTYPE, Forward, Relevance
from .modes import Start
from .rules import EPSILON, STABILIZER, LayerRule, RuleInfo

# Each conv layer's output after ReLU and max-pooling: (channels, side, side).
_POOLED1_PX = (IMAGE_PX - CNN_KERNEL + 1) // CNN_POOL
CONV_SHAPES = {"conv1": (CNN_CHANNELS[0], _POOLED1_PX, _POOLED1_PX),
               "conv2": (CNN_CHANNELS[1], CNN_POOLED_PX, CNN_POOLED_PX)}
CONV_LAYERS = tuple(CONV_SHAPES)
# The LeNet's forward and backward passes run in float32 (its dense layers' edges and logits in DTYPE):
# float64 transposed convolutions cost 10 ms at batch 32 here, float32 0.3 ms; the maps still equal
# zennit's to ~3e-7 relative (tests/test_explain_cnn.py).
CONV_DTYPE = torch.float32
FLAT = LayerRule("flat")


def _preset(label: str, description: str, conv1: LayerRule, conv2: LayerRule) -> RuleInfo:
    return RuleInfo(label, description, {"conv1": conv1, "conv2": conv2, "fc1": EPSILON, "fc2": EPSILON})


CNN_RULES: dict[str, RuleInfo] = {
    "epsilon_gamma_box": _preset(
        "EpsilonGammaBox", "zennit's EpsilonGammaBox over the pixels' real bounds [0, 1]: ZBox on the first "
        "convolution (empty pixels can receive relevance), γ = 0.25 on the second, ε on the dense layers.",
        LayerRule("zbox", low=0.0, high=1.0), LayerRule("gamma", gamma=0.25)),
    "epsilon_plus_flat": _preset(
        "EpsilonPlusFlat", "zennit's EpsilonPlusFlat: the flat rule on the first convolution (relevance spread "
        "evenly over each 5×5 field, ink or not), z⁺ on the second, ε on the dense layers.",
        FLAT, LayerRule("zplus")),
    "epsilon_alpha2_beta1_flat": _preset(
        "EpsilonAlpha2Beta1Flat", "zennit's EpsilonAlpha2Beta1Flat: flat on the first convolution, α2β1 on the "
        "second (evidence for counts twice, against once), ε on the dense layers.",
        FLAT, LayerRule("alpha_beta", alpha=2.0, beta=1.0)),
    "epsilon_plus": _preset(
        "EpsilonPlus", "zennit's EpsilonPlus: z⁺ on both convolutions (only positive contributions, so the map "
        "is positive wherever the class is), ε on the dense layers.",
        LayerRule("zplus"), LayerRule("zplus")),
}
DEFAULT_CNN_RULE = "epsilon_plus_flat"


@dataclass(frozen=True)
class ConvForward(Forward):
    """A :class:`Forward` of the LeNet with what its backward pass needs: ``x``, ``z1``, ``a``, ``logits`` in
    ``DTYPE``, the conv layers' tensors in :data:`CONV_DTYPE` (indices int64).

    ``conv1 (B, 8, 24, 24)``, ``conv2 (B, 16, 8, 8)``: the convolutions' outputs before their ReLU;
    ``pooled1 (B, 8, 12, 12)``, ``pooled2 (B, 16, 4, 4)``: each block's output after ReLU and max-pooling;
    ``winners1``, ``winners2``: the max-pools' indices, where relevance goes back.
    """

    conv1: torch.Tensor = torch.empty(0)
    conv2: torch.Tensor = torch.empty(0)
    pooled1: torch.Tensor = torch.empty(0)
    pooled2: torch.Tensor = torch.empty(0)
    winners1: torch.Tensor = torch.empty(0)
    winners2: torch.Tensor = torch.empty(0)

    @property
    def feature_maps(self) -> dict[str, torch.Tensor]:
        return {"conv1": self.pooled1, "conv2": self.pooled2}

    def rows(self, rows: list[int]) -> "ConvForward":
        if rows == list(range(len(self.x))):
            return self
        base = Forward.rows(self, rows)
        return ConvForward(base.x, base.z1, base.a, base.logits, base.keep, self.conv1[rows], self.conv2[rows],
                           self.pooled1[rows], self.pooled2[rows], self.winners1[rows], self.winners2[rows])

    def repeated(self, times: int) -> "ConvForward":
        """Each sample ``times`` times in a row (``repeat_interleave``): one backward pass for many starts."""
        def each(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.repeat_interleave(times, dim=0)
        keep = None if self.keep is None else each(self.keep)
        return ConvForward(each(self.x), each(self.z1), each(self.a), each(self.logits), keep, each(self.conv1),
                           each(self.conv2), each(self.pooled1), each(self.pooled2), each(self.winners1),
                           each(self.winners2))


def transposed(relevance: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``convᵀ(relevance)``: the gradient of a stride-1, unpadded convolution with ``weight`` w.r.t. its input.

    Into one channel (``conv1``'s input) as a convolution of the flipped kernel over the padded relevance:
    the same sums, and torch's CPU ``conv_transpose2d`` into one channel is slow (float32, 32 maps 24 → 28:
    6.3 ms against 1.3 ms here); into several channels ``conv_transpose2d`` itself, which is not.
    """
    if weight.shape[1] == 1:
        return F.conv2d(relevance, weight.flip(2, 3).transpose(0, 1), padding=weight.shape[-1] - 1)
    return F.conv_transpose2d(relevance, weight)


def conv_relevance(rule: LayerRule, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   relevance: torch.Tensor) -> torch.Tensor:
    """The relevance at a convolution's input ``x`` of ``relevance`` at its output, under ``rule``.

    zennit 0.4.6's rules (``zennit.rules``) with inputs ``x ≥ 0`` (pixels, ReLU
    outputs after max-pooling), so that the terms of negative inputs vanish;
    stride 1, no padding: ``conv_transpose2d`` is the convolution's ``Wᵀ``.
    """
    def forward(inputs: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.conv2d(inputs, w, b)

    def share(inputs: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, epsilon: float) -> torch.Tensor:
        return transposed(relevance / stabilize(forward(inputs, w, b), epsilon), w)

    positive, negative = weight.clamp(min=0), weight.clamp(max=0)
    match rule.kind:
        case "epsilon":
            return x * share(x, weight, bias, rule.epsilon)
        case "gamma":
            return x * share(x, weight + rule.gamma * positive, bias + rule.gamma * bias.clamp(min=0), STABILIZER)
        case "zplus":
            return x * share(x, positive, bias.clamp(min=0), STABILIZER)
        case "alpha_beta":
            return x * (rule.alpha * share(x, positive, bias.clamp(min=0), STABILIZER)
                        - rule.beta * share(x, negative, bias.clamp(max=0), STABILIZER))
        case "zbox":
            low, high = torch.full_like(x, rule.low), torch.full_like(x, rule.high)
            scaled = relevance / stabilize(forward(x, weight, bias) - forward(low, positive, bias.clamp(min=0))
                                           - forward(high, negative, bias.clamp(max=0)), STABILIZER)
            return (x * transposed(scaled, weight) - low * transposed(scaled, positive)
                    - high * transposed(scaled, negative))
        case "flat":
            # Every weight is 1: each output's share spreads over its field whatever its channel, so the
            # channels are summed first and one transposed convolution of one channel spreads them (C× fewer
            # operations).  The denominator is the field's size, the same at every position.
            field = stabilize(torch.full((), float(weight[0].numel()), dtype=x.dtype), STABILIZER)
            ones = torch.ones((1, x.shape[1], *weight.shape[2:]), dtype=x.dtype)
            return transposed(relevance.sum(dim=1, keepdim=True) / field, ones)
    raise ValueError(f"unknown LRP rule kind {rule.kind!r} for a convolution")


def unpool(relevance: torch.Tensor, winners: torch.Tensor, size: int) -> torch.Tensor:
    """Max-pooling's gradient: each pooled value's relevance goes to the position that won its pool."""
    return F.max_unpool2d(relevance, winners, (CNN_POOL, CNN_POOL), output_size=(size, size))


class ConvBackend:
    """All maps of a batch of drawings on the LeNet, by its layers' rules in closed form.

    Implements :class:`~server.explain.backend.RelevanceBackend` (the hidden layer is ``fc1``) and
    :meth:`channels`, the relevance of each conv channel.

    Parameters
    ----------
    model:
        A :func:`~model_store.architecture.build_cnn` network; its weights are copied as :data:`CONV_DTYPE`.
    """

    def __init__(self, model: nn.Module) -> None:
        def parameters(name: str) -> tuple[torch.Tensor, torch.Tensor]:
            layer = model.get_submodule(name)
            if not isinstance(layer, (nn.Conv2d, nn.Linear)) or layer.bias is None:
                raise TypeError(f"{name} must be a Conv2d or Linear with a bias, got {type(layer).__name__}")
            return layer.weight.detach().to(CONV_DTYPE), layer.bias.detach().to(CONV_DTYPE)

        self.w_conv1, self.b_conv1 = parameters("conv1")
        self.w_conv2, self.b_conv2 = parameters("conv2")
        self.w1, self.b1 = parameters("fc1")
        w2, b2 = parameters("fc2")
        # Every preset puts ε on both dense layers (zennit's composites map every Linear to Epsilon()).
        self._fc1 = closed_form(EPSILON, self.w1, self.b1)
        self.w2, self.b2 = w2.to(DTYPE), b2.to(DTYPE)  # the edges and logits, H × 10: float64 costs nothing
        self._fc2 = closed_form(EPSILON, self.w2, self.b2)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> ConvForward:
        """The forward pass of ``x (B, 784)`` of ``DTYPE`` in [0, 1]; ``keep``: see :class:`Forward`."""
        image = x.to(CONV_DTYPE).reshape(-1, 1, IMAGE_PX, IMAGE_PX)
        conv1 = F.conv2d(image, self.w_conv1, self.b_conv1)
        pooled1, winners1 = F.max_pool2d(conv1.clamp(min=0), CNN_POOL, return_indices=True)
        conv2 = F.conv2d(pooled1, self.w_conv2, self.b_conv2)
        pooled2, winners2 = F.max_pool2d(conv2.clamp(min=0), CNN_POOL, return_indices=True)
        z1 = torch.addmm(self.b1, pooled2.reshape(len(x), -1), self.w1.T).to(DTYPE)
        a = z1.clamp(min=0) if keep is None else z1.clamp(min=0) * keep
        logits = torch.addmm(self.b2, a, self.w2.T)
        return ConvForward(x, z1, a, logits, keep, conv1, conv2, pooled1, pooled2, winners1, winners2)

    def edges(self, forward: Forward, rule: str) -> torch.Tensor:
        """``(B, H, 10)`` relevance message ``R(j→c)``, each class started from its own logit (ε on ``fc2``)."""
        return unit_maps(self._fc2, forward.a, forward.logits).transpose(1, 2)

    def backward(self, forward: ConvForward, rule: str, start: torch.Tensor,
                 channels: Sequence[tuple[str, int] | None] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The maps ``(B, 784)`` of relevance ``start (B, H)`` at ``fc1``'s output, and each conv layer's relevance.

        ``channels[b]``: keep sample ``b``'s relevance at that conv layer's output on that channel only
        (CRP's condition); ``None``: no condition.  Returns the maps and ``{layer: (B, C, h, w)}``, the
        relevance at each conv layer's output (before any condition of that layer).
        """
        layers = CNN_RULES[rule].layers
        batch = len(start)
        flat = propagate(self._fc1, forward.pooled2.reshape(batch, -1), start.to(CONV_DTYPE)[:, None, :])[:, 0]
        at_conv2 = unpool(flat.reshape(forward.pooled2.shape), forward.winners2, forward.conv2.shape[-1])
        recorded = {"conv2": at_conv2}
        at_conv2 = self._condition(at_conv2, "conv2", channels)
        at_pooled1 = conv_relevance(layers["conv2"], forward.pooled1, self.w_conv2, self.b_conv2, at_conv2)
        at_conv1 = unpool(at_pooled1, forward.winners1, forward.conv1.shape[-1])
        recorded["conv1"] = at_conv1
        at_conv1 = self._condition(at_conv1, "conv1", channels)
        image = forward.x.to(CONV_DTYPE).reshape(-1, 1, IMAGE_PX, IMAGE_PX)
        maps = conv_relevance(layers["conv1"], image, self.w_conv1, self.b_conv1, at_conv1)
        return maps.reshape(batch, INPUT_SIZE).to(DTYPE), {layer: value.to(DTYPE) for layer, value in recorded.items()}

    @staticmethod
    def _condition(relevance: torch.Tensor, layer: str, channels: Sequence[tuple[str, int] | None] | None
                   ) -> torch.Tensor:
        rows = [(b, channel[1]) for b, channel in enumerate(channels or ()) if channel and channel[0] == layer]
        if not rows:
            return relevance
        mask = torch.ones(relevance.shape[:2], dtype=relevance.dtype)
        for b, k in rows:
            mask[b] = 0.0
            mask[b, k] = 1.0
        return relevance * mask[:, :, None, None]

    def starts(self, forward: Forward, edges: torch.Tensor, starts: Sequence[Start | None]
               ) -> tuple[torch.Tensor, list[tuple[str, int] | None]]:
        """The relevance at ``fc1``'s output ``(B, H)`` each start begins with, and each sample's channel condition."""
        start = torch.zeros_like(forward.z1)
        channels: list[tuple[str, int] | None] = []
        for b, selected in enumerate(starts):
            channel = None
            if selected is not None:
                on_unit = selected.layer in (None, "fc1") and selected.hidden is not None
                column = edges[b, :, selected.target]
                if selected.mode == "contrast" and selected.versus is not None:
                    column = column - edges[b, :, selected.versus]
                if selected.mode == "hidden" and selected.hidden is not None:
                    start[b, selected.hidden] = forward.z1[b, selected.hidden]
                elif on_unit and selected.hidden is not None:
                    start[b, selected.hidden] = column[selected.hidden]
                else:
                    start[b] = column
                if selected.layer in CONV_LAYERS and selected.hidden is not None:
                    channel = (selected.layer, selected.hidden)
            channels.append(channel)
        return start, channels

    def relevance(
        self, forward: Forward, rule: str, starts: Sequence[Start | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges ``(B, H, 10)`` and one selected map per sample ``(B, 784)``; a ``None`` start gives zeros."""
        result = self.explain(forward, rule, starts)
        return result.edges, result.maps

    def explain(self, forward: Forward, rule: str, starts: Sequence[Start | None]) -> Relevance:
        """:meth:`relevance` and, from the same pass, each conv layer's channel relevances ``(B, C)``
        (under a channel condition, those of the layers below it: how much each channel feeds it)."""
        edges = self.edges(forward, rule)
        start, channels = self.starts(forward, edges, starts)
        maps, recorded = self.backward(_conv(forward), rule, start, channels)
        return Relevance(edges, maps, {layer: relevance.sum(dim=(2, 3)) for layer, relevance in recorded.items()})

    def channels(self, forward: Forward, rule: str, targets: Sequence[int],
                 conditions: Sequence[tuple[str, int] | None] | None = None) -> dict[str, torch.Tensor]:
        """``{layer: (B, C)}``: each conv channel's relevance for class ``targets[b]`` (LRP from its logit).

        The sum of the relevance at the layer's output over the channel's positions: zennit-crp's
        ``ChannelConcept.attribute`` without its normalisation.  ``conditions[b]``: a channel (CRP's
        condition) that sample ``b``'s relevance must pass through first; the layers below it then give
        how much each of their channels feeds it (the edges of zennit-crp's ``AttributionGraph``).
        """
        edges = self.edges(forward, rule)
        start = edges[torch.arange(len(targets)), :, list(targets)]
        _, recorded = self.backward(_conv(forward), rule, start, conditions)
        return {layer: relevance.sum(dim=(2, 3)) for layer, relevance in recorded.items()}

    def all_maps(self, forward: Forward, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All class maps ``(B, 10, 784)`` and all ``fc1`` unit maps alone ``(B, H, 784)`` (float32)."""
        conv = _conv(forward)
        batch, hidden = forward.z1.shape
        edges = self.edges(forward, rule)
        classes, _ = self.backward(conv.repeated(N_CLASSES), rule, edges.transpose(1, 2).reshape(-1, hidden))
        units = torch.diag_embed(forward.z1).reshape(-1, hidden)
        unit_maps_, _ = self.backward(conv.repeated(hidden), rule, units)
        return classes.reshape(batch, N_CLASSES, -1), unit_maps_.reshape(batch, hidden, -1).float()


def _conv(forward: Forward) -> ConvForward:
    if not isinstance(forward, ConvForward):
        raise TypeError(f"the cnn backend needs its own forward pass, got {type(forward).__name__}")
    return forward

