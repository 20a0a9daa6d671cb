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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model_store.architecture import CNN_CHANNELS, CNN_KERNEL, CNN_POOL, CNN_POOLED_PX
from model_store.sizes import IMAGE_PX, INPUT_SIZE, N_CLASSES

from .fast import stabilize
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


# Which convolution kernel runs a layer, by batch size (one thread, float32, measured here in µs at batch
# 1 / 4 / 16): torch's default oneDNN kernel has a fixed cost of ~40 µs a call, its native im2col kernels
# (``thnn_conv2d``, ``slow_conv_transpose2d``) almost none but scale worse.  conv1 forward (1 → 8): native
# 9 / 27 / 103 against 46 / 65 / 158, so always native; conv2 (8 → 16) 13 / 44 / 169 against 41 / 51 / 97,
# its transpose 22 / 85 / 330 against 49 / 72 / 165: native up to SMALL_BATCH samples.  At batch 1 a frame is
# a few dozen such calls (docs/benchmarks.md, "The cnn's frame").  Both are torch's own CPU kernels: the
# maps agree with oneDNN's to float32 rounding (tests/test_explain_cnn.py runs both).
SMALL_BATCH = 2
_native_conv2d: Callable[..., torch.Tensor] = torch._C._nn.thnn_conv2d  # type: ignore[attr-defined]
_native_conv_transpose2d: Callable[..., torch.Tensor] = torch._C._nn.slow_conv_transpose2d  # type: ignore[attr-defined]
_max_unpool2d: Callable[..., torch.Tensor] = torch._C._nn.max_unpool2d


def convolve(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, padding: int = 0,
             native: bool = False) -> torch.Tensor:
    """``conv2d(x, weight, bias)`` with stride 1, by the native kernel if ``native`` (see :data:`SMALL_BATCH`)."""
    if native:
        return _native_conv2d(x, weight, weight.shape[-2:], bias, 1, padding)
    return F.conv2d(x, weight, bias, padding=padding)


@dataclass(frozen=True)
class ConvRule:
    """A convolution's LRP rule with its weights prepared once per model (stride 1, no padding, ``x ≥ 0``)::

        s = R_out / stab(conv(x, den_weight) + den_bias)      (G groups stacked along the channels)
        R_in = x ⊙ convᵀ(s, numerator)  [+ convᵀ(s, constant)]

    zennit 0.4.6's rules (``zennit.rules``) with inputs ``x ≥ 0`` (pixels, ReLU outputs after
    max-pooling), so that the terms of negative inputs vanish.  ``den_weight`` ``None``: the denominator
    is the layer's own pre-activation plus ``den_bias`` per channel (ε; ZBox, whose bounds shift it by a
    constant per channel on an unpadded convolution).  ``groups``: 2 for α/β (``z⁺`` and ``z⁻`` in one
    convolution, ``α w⁺`` and ``−β w⁻`` summed by one transposed convolution).  ``numerator``
    ``(G·C_out, C_in[+C_in], k, k)``, with ZBox's constant term ``−(low·w⁺ + high·w⁻)`` as its extra
    input channels; ``flipped``: the same as a convolution's weight (``(C_in[+C_in], G·C_out, k, k)``,
    flipped kernels) where it is cheaper (into one or two channels, see :func:`transposed`).
    ``positive``: the denominator is ≥ 0 (z⁺), so ``stab(z) = z + ε``.  ``band``, ``band_t``: the flat rule's
    ``(n_in, n_out)`` matrix of ones over each field, divided by the field's stabilised size, and the
    transpose of the ones.
    """

    kind: str
    epsilon: float
    den_weight: torch.Tensor | None = None
    den_bias: torch.Tensor | None = None
    groups: int = 1
    numerator: torch.Tensor | None = None
    flipped: torch.Tensor | None = None
    constant: bool = False
    positive: bool = False
    band: torch.Tensor | None = None
    band_t: torch.Tensor | None = None


def prepare(rule: LayerRule, weight: torch.Tensor, bias: torch.Tensor, in_px: int) -> ConvRule:
    """The :class:`ConvRule` of ``rule`` on a convolution ``(weight, bias)`` whose input is ``in_px`` square."""
    positive, negative = weight.clamp(min=0), weight.clamp(max=0)
    bias_positive, bias_negative = bias.clamp(min=0), bias.clamp(max=0)

    def made(numerator: torch.Tensor, **options: object) -> ConvRule:
        flipped = numerator.flip(2, 3).transpose(0, 1).contiguous() if numerator.shape[1] <= 2 else None
        return ConvRule(rule.kind, rule.epsilon, numerator=numerator.contiguous(), flipped=flipped,
                        **options)  # type: ignore[arg-type]

    match rule.kind:
        case "epsilon":
            return made(weight)
        case "gamma":
            boosted = weight + rule.gamma * positive
            return made(boosted, den_weight=boosted, den_bias=bias + rule.gamma * bias_positive)
        case "zplus":
            return made(positive, den_weight=positive, den_bias=bias_positive, positive=True)
        case "alpha_beta":
            return made(torch.cat([rule.alpha * positive, -rule.beta * negative]),
                        den_weight=torch.cat([positive, negative]), den_bias=torch.cat([bias_positive, bias_negative]),
                        groups=2)
        case "zbox":
            # Montavon et al. 2017, z^B: stab(conv(x, w) + b − conv(low, w⁺) − b⁺ − conv(high, w⁻) − b⁻); with
            # constant bounds the two extra convolutions are constants per channel, and b = b⁺ + b⁻.
            shift = -(bias + rule.low * positive.sum(dim=(1, 2, 3)) + rule.high * negative.sum(dim=(1, 2, 3)))
            return made(torch.cat([weight, -(rule.low * positive + rule.high * negative)], dim=1),
                        den_bias=shift[None, :, None, None], constant=True)
        case "flat":
            # Every weight 1, no bias: each output spreads its relevance evenly over its field, whatever the
            # channel, so the channels are summed and the spreading is two products with a band of ones.
            field = stabilize(torch.full((), float(weight[0].numel()), dtype=weight.dtype), STABILIZER)
            size = weight.shape[-1]
            out_px = in_px - size + 1
            offsets = torch.arange(in_px)[:, None] - torch.arange(out_px)[None, :]
            band = ((offsets >= 0) & (offsets < size)).to(weight.dtype)
            return ConvRule(rule.kind, rule.epsilon, band=band / field, band_t=band.T.contiguous())
    raise ValueError(f"unknown LRP rule kind {rule.kind!r} for a convolution")


def transposed(relevance: torch.Tensor, rule: ConvRule, native: bool) -> torch.Tensor:
    """``convᵀ(relevance, rule.numerator)``: the gradient of a stride-1, unpadded convolution w.r.t. its input.

    torch's oneDNN ``conv_transpose2d`` is slow into one or two channels (conv1's input, float32, 8 → 1,
    24 → 28, µs at batch 1 / 16: 110 / 1116): into one channel the native kernel (21 / 310), into two
    the convolution of the flipped kernels over the padded relevance (71 / 572; native 39 / 609), the same sums.
    """
    if rule.numerator is None:
        raise ValueError(f"the {rule.kind} rule has no transposed convolution")
    channels = rule.numerator.shape[1]
    if native or channels == 1:
        return _native_conv_transpose2d(relevance, rule.numerator, rule.numerator.shape[-2:])
    if rule.flipped is not None:
        return F.conv2d(relevance, rule.flipped, padding=rule.flipped.shape[-1] - 1)
    return F.conv_transpose2d(relevance, rule.numerator)


def conv_relevance(rule: ConvRule, x: torch.Tensor, preactivation: torch.Tensor, relevance: torch.Tensor,
                   native: bool) -> torch.Tensor:
    """The relevance ``(B, C_in, n, n)`` at a convolution's input ``x`` of ``relevance`` at its output.

    ``preactivation``: the convolution's output on ``x`` (its bias included); ``native``: see :data:`SMALL_BATCH`.
    """
    batch = x.shape[0]  # not len(): torch's __len__ is a Python call
    if rule.band is not None and rule.band_t is not None:  # flat
        spread = rule.band @ relevance.sum(dim=1) @ rule.band_t
        return spread[:, None].expand(batch, x.shape[1], -1, -1)
    if rule.den_weight is None:
        z = preactivation if rule.den_bias is None else preactivation + rule.den_bias
    else:
        z = convolve(x, rule.den_weight, rule.den_bias, native=native)
    # zennit.core.stabilize, bit for bit: z ± ε away from 0 (+ε at 0); a z⁺ denominator is never negative.
    z = z + rule.epsilon if rule.positive else z + torch.where(z >= 0, rule.epsilon, -rule.epsilon)
    if rule.groups == 1:
        shares = relevance / z
    else:
        shares = (relevance[:, None] / z.view(batch, rule.groups, *relevance.shape[1:])).view(z.shape)
    lower = transposed(shares, rule, native)
    if rule.constant:
        channels = x.shape[1]
        return x * lower[:, :channels] + lower[:, channels:]
    return x * lower


def pool(conv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``max_pool2d(relu(conv))`` ``(B, C, n/2, n/2)`` and where relevance goes back (max-pooling's indices).

    Pooled before the ReLU (the two commute; a pool whose maximum is ≤ 0 outputs 0, and relevance at a zero
    output is zero under every preset, ``x ⊙ …`` above, so where it would go does not matter).  Beyond
    :data:`SMALL_BATCH` in channels-last memory order, where torch's CPU kernel is ~4× faster (batch 16,
    24 × 24: 61 against 257 µs); at batch 1 the two copies would cost more than they save.
    """
    if conv.shape[0] <= SMALL_BATCH:
        pooled, winners = F.max_pool2d(conv, CNN_POOL, return_indices=True)
        return pooled.clamp(min=0), winners
    pooled, winners = F.max_pool2d(conv.contiguous(memory_format=torch.channels_last), CNN_POOL,
                                   return_indices=True)
    return pooled.clamp(min=0).contiguous(), winners


def unpool(relevance: torch.Tensor, winners: torch.Tensor, size: int) -> torch.Tensor:
    """Max-pooling's gradient: each pooled value's relevance goes to the position that won its pool.

    torch's kernel itself: ``F.max_unpool2d`` first checks the output size symbolically (~13 µs a call here at batch 1).
    """
    return _max_unpool2d(relevance, winners, (size, size))


@dataclass(frozen=True)
class ConvForward(Forward):
    """A :class:`Forward` of the LeNet with what its backward pass needs: ``x``, ``z1``, ``a``, ``logits`` in
    ``DTYPE``, the conv layers' tensors in :data:`CONV_DTYPE` (indices int64).

    ``image (B, 1, 28, 28)``: ``x``; ``conv1 (B, 8, 24, 24)``, ``conv2 (B, 16, 8, 8)``: the convolutions'
    outputs before their ReLU; ``pooled1 (B, 8, 12, 12)``, ``pooled2 (B, 16, 4, 4)``: each block's output
    after ReLU and max-pooling; ``winners1``, ``winners2``: the max-pools' indices, where relevance goes back;
    ``hidden (B, H)``: ``fc1``'s pre-activation ``z1`` as computed.
    """

    image: torch.Tensor = torch.empty(0)
    conv1: torch.Tensor = torch.empty(0)
    conv2: torch.Tensor = torch.empty(0)
    pooled1: torch.Tensor = torch.empty(0)
    pooled2: torch.Tensor = torch.empty(0)
    winners1: torch.Tensor = torch.empty(0)
    winners2: torch.Tensor = torch.empty(0)
    hidden: torch.Tensor = torch.empty(0)

    @property
    def feature_maps(self) -> dict[str, torch.Tensor]:
        return {"conv1": self.pooled1, "conv2": self.pooled2}

    def _each(self, change: Callable[[torch.Tensor], torch.Tensor]) -> "ConvForward":
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        changed: dict[str, Any] = {name: None if value is None else change(value) for name, value in values.items()}
        return ConvForward(**changed)

    def rows(self, rows: list[int]) -> "ConvForward":
        if rows == list(range(len(self.x))):
            return self
        return self._each(lambda tensor: tensor[rows])

    def repeated(self, times: int) -> "ConvForward":
        """Each sample ``times`` times in a row (``repeat_interleave``): one backward pass for many starts."""
        return self._each(lambda tensor: tensor.repeat_interleave(times, dim=0))


class ConvBackend:
    """All maps of a batch of drawings on the LeNet, by its layers' rules in closed form.

    Implements :class:`~server.explain.backend.RelevanceBackend` (the hidden layer is ``fc1``) and
    :meth:`channels`, the relevance of each conv channel.  Every rule's weights are prepared once, here
    (:func:`prepare`); a frame at batch 1 is about 50 small torch calls.

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
            return layer.weight.detach().to(CONV_DTYPE).contiguous(), layer.bias.detach().to(CONV_DTYPE)

        self.w_conv1, self.b_conv1 = parameters("conv1")
        self.w_conv2, self.b_conv2 = parameters("conv2")
        self.w1, self.b1 = parameters("fc1")
        w2, b2 = parameters("fc2")
        self.w2, self.b2 = w2.to(DTYPE), b2.to(DTYPE)  # the edges and logits, H × 10: float64 costs nothing
        self._w2t = self.w2.T.contiguous()
        inputs = {"conv1": (self.w_conv1, self.b_conv1, IMAGE_PX), "conv2": (self.w_conv2, self.b_conv2, _POOLED1_PX)}
        # ±ε of the dense layers' ε (zennit.core.stabilize) as tensors of each dtype, made once (a Python float
        # makes two per call).
        epsilon = EPSILON.epsilon
        self._stabilizers = {dtype: (torch.tensor(epsilon, dtype=dtype), torch.tensor(-epsilon, dtype=dtype))
                             for dtype in (DTYPE, CONV_DTYPE)}
        self._rules: dict[str, dict[str, ConvRule]] = {}
        for name, info in CNN_RULES.items():
            # The dense layers' closed forms below are ε's (zennit's composites map every Linear to Epsilon()).
            if info.layers["fc1"] != EPSILON or info.layers["fc2"] != EPSILON:
                raise ValueError(f"preset {name}: the cnn backend computes ε on fc1 and fc2 only")
            self._rules[name] = {layer: prepare(info.layers[layer], *inputs[layer]) for layer in CONV_LAYERS}

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> ConvForward:
        """The forward pass of ``x (B, 784)`` of ``DTYPE`` in [0, 1]; ``keep``: see :class:`Forward`."""
        batch = x.shape[0]
        image = x.reshape(batch, 1, IMAGE_PX, IMAGE_PX).to(CONV_DTYPE)
        conv1 = convolve(image, self.w_conv1, self.b_conv1, native=True)
        pooled1, winners1 = pool(conv1)
        conv2 = convolve(pooled1, self.w_conv2, self.b_conv2, native=batch <= SMALL_BATCH)
        pooled2, winners2 = pool(conv2)
        hidden = torch.addmm(self.b1, pooled2.view(batch, -1), self.w1.T)
        z1 = hidden.to(DTYPE)
        a = z1.clamp(min=0) if keep is None else z1.clamp(min=0) * keep
        logits = torch.addmm(self.b2, a, self._w2t)
        return ConvForward(x, z1, a, logits, keep, image, conv1, conv2, pooled1, pooled2, winners1, winners2, hidden)

    def edges(self, forward: Forward, rule: str) -> torch.Tensor:
        """``(B, H, 10)`` relevance message ``R(j→c) = a_j W2[c, j] z_c / stab(z_c)``: ε on ``fc2``, each class
        started from its own logit ``z_c`` (the same for every preset)."""
        logits = forward.logits
        ratio = logits / (logits + torch.where(logits >= 0, *self._stabilizers[DTYPE]))
        return forward.a[:, :, None] * self._w2t * ratio[:, None, :]

    def backward(self, forward: ConvForward, rule: str, start: torch.Tensor,
                 channels: Sequence[tuple[str, int] | None] | None = None
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The maps ``(B, 784)`` of relevance ``start (B, H)`` at ``fc1``'s output, and each conv channel's relevance.

        ``channels[b]``: keep sample ``b``'s relevance at that conv layer's output on that channel only
        (CRP's condition); ``None``: no condition.  Returns the maps and ``{layer: (B, C)}``, the relevance
        at each conv layer's output summed over each channel (before any condition of that layer), ``DTYPE``.
        """
        rules = self._rules[rule]
        batch = start.shape[0]
        masks = self._masks(channels, batch)
        native = batch <= SMALL_BATCH
        hidden = forward.hidden
        shares = start.to(CONV_DTYPE) / (hidden + torch.where(hidden >= 0, *self._stabilizers[CONV_DTYPE]))
        at_pooled2 = (shares @ self.w1).mul_(forward.pooled2.view(batch, -1))  # ε on fc1
        recorded = {"conv2": at_pooled2.view(batch, CNN_CHANNELS[1], -1).sum(dim=2, dtype=DTYPE)}
        if "conv2" in masks:
            at_pooled2 = (at_pooled2.view(batch, CNN_CHANNELS[1], -1) * masks["conv2"][:, :, None])
        at_conv2 = unpool(at_pooled2.view(forward.pooled2.shape), forward.winners2, forward.conv2.shape[-1])
        at_pooled1 = conv_relevance(rules["conv2"], forward.pooled1, forward.conv2, at_conv2, native)
        recorded["conv1"] = at_pooled1.sum(dim=(2, 3), dtype=DTYPE)
        if "conv1" in masks:
            at_pooled1 = at_pooled1 * masks["conv1"][:, :, None, None]
        at_conv1 = unpool(at_pooled1, forward.winners1, forward.conv1.shape[-1])
        maps = conv_relevance(rules["conv1"], forward.image, forward.conv1, at_conv1, native)
        return maps.reshape(batch, INPUT_SIZE).to(DTYPE), recorded

    def _masks(self, channels: Sequence[tuple[str, int] | None] | None, batch: int) -> dict[str, torch.Tensor]:
        """CRP's conditions as ``{layer: (B, C)}`` masks: 1 on sample ``b``'s channel (every channel where
        ``b`` has no condition in that layer), else 0."""
        rows: dict[str, list[int]] = {}
        for b, channel in enumerate(channels or ()):
            if channel is not None:
                layer, k = channel
                rows.setdefault(layer, [CONV_SHAPES[layer][0]] * batch)[b] = k
        return {layer: channel_mask(layer, tuple(picked)) for layer, picked in rows.items()}

    def starts(self, forward: Forward, edges: torch.Tensor, starts: Sequence[Start | None]
               ) -> tuple[torch.Tensor, list[tuple[str, int] | None]]:
        """The relevance at ``fc1``'s output ``(B, H)`` each start begins with, and each sample's channel condition.

        ``edges @ classes`` (``+1`` for the target, ``−1`` for a contrast's rival) restricted to ``units`` (one
        unit of ``fc1``, or all), plus ``z1`` on ``alone``'s unit (mode ``hidden``): a few whole-batch
        calls, however many samples.
        """
        batch, width = forward.z1.shape
        classes = np.zeros((batch, N_CLASSES, 1))
        units = np.ones((batch, width))
        alone = np.zeros((batch, width))
        any_alone = False
        channels: list[tuple[str, int] | None] = []
        for b, selected in enumerate(starts):
            channel = None
            if selected is None:
                units[b] = 0.0
            elif selected.mode == "hidden" and selected.hidden is not None:
                units[b] = 0.0
                alone[b, selected.hidden] = 1.0
                any_alone = True
            else:
                classes[b, selected.target] = 1.0
                if selected.mode == "contrast" and selected.versus is not None:
                    classes[b, selected.versus] = -1.0
                if selected.hidden is not None and selected.layer in CONV_LAYERS:
                    channel = (selected.layer, selected.hidden)
                elif selected.hidden is not None:
                    units[b] = 0.0
                    units[b, selected.hidden] = 1.0
            channels.append(channel)
        start = torch.bmm(edges, torch.from_numpy(classes))[:, :, 0] * torch.from_numpy(units)
        if any_alone:
            start = start + forward.z1 * torch.from_numpy(alone)
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
        return Relevance(edges, maps, recorded)

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
        return self.backward(_conv(forward), rule, start, conditions)[1]

    def all_maps(self, forward: Forward, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All class maps ``(B, 10, 784)`` and all ``fc1`` unit maps alone ``(B, H, 784)`` (float32)."""
        conv = _conv(forward)
        batch, hidden = forward.z1.shape
        edges = self.edges(forward, rule)
        classes, _ = self.backward(conv.repeated(N_CLASSES), rule, edges.transpose(1, 2).reshape(-1, hidden))
        units = torch.diag_embed(forward.z1).reshape(-1, hidden)
        unit_maps_, _ = self.backward(conv.repeated(hidden), rule, units)
        return classes.reshape(batch, N_CLASSES, -1), unit_maps_.reshape(batch, hidden, -1).float()


@functools.lru_cache(maxsize=1024)
def channel_mask(layer: str, picked: tuple[int, ...]) -> torch.Tensor:
    """``(len(picked), C)``: row ``b`` is channel ``picked[b]`` of ``layer`` alone, or every channel if it is ``C``.

    Cached, the same tensor for every backend (only ever read): indexing a tensor by a list costs ~18 µs a
    call here, and a frame's masks repeat.
    """
    width = CONV_SHAPES[layer][0]
    table = torch.cat([torch.eye(width), torch.ones(1, width)]).to(CONV_DTYPE)
    return table[list(picked)]


def _conv(forward: Forward) -> ConvForward:
    if not isinstance(forward, ConvForward):
        raise TypeError(f"the cnn backend needs its own forward pass, got {type(forward).__name__}")
    return forward
