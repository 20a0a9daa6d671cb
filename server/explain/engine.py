"""The explanation engine: a batch of 28×28 drawings and selections → frame data.

One call, :meth:`Engine.explain`, does the forward pass, the diagram's
numbers (activations, hidden relevances, edge messages) and the heatmap of
each request's selection, for ``B`` drawings at once, each with its own
selection, method and rule.  The backend computes LRP/CRP relevance:
``"fast"`` (closed form, :mod:`server.explain.fast`, the default) or
``"reference"`` (zennit / zennit-crp, :mod:`server.explain.reference`); the
two agree to rounding.  Other methods come from captum
(:mod:`server.explain.methods`).

Relevance starts from the logit of the explained class, as CRP does (zennit
alone would start from 1).  What a selection explains, its *mode*, is decided
in one table, :mod:`server.explain.modes`; what a kind of network needs, in
one other, :mod:`server.explain.family` (``mlp``, ``cnn``).

A request's ``knockout`` lists hidden units whose outputs are forced to zero:
the prediction, activations, edges and every map follow from that forward pass.

An engine owns a private copy of the model (zennit, CRP and captum attach
hooks to the model they are given): create one engine per worker thread.
"""

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from model_store.architecture import linear_layer
from model_store.sizes import IMAGE_SHAPE, INPUT_SIZE, N_CLASSES

from .faithfulness import PIXELS_PER_STEP
from .family import FAMILIES, Family, family_of
from .fast import FastBackend
from .forward import DTYPE, Forward
from .knockout import KnockoutEffect, keep_mask, knocked_out, knockout_effect
from .live import LiveLane
from .methods import CONV_METHODS, METHODS, attribute, drawing_seed
from .modes import HIDDEN_LAYER, MODES, Mode, mode_of, start_of
from .modes import Start as Start
from .rules import RULES
from .sanity import COPIES, Sanity, check, randomized_model

# The engine's public names; METHODS and RULES are the catalogues the page lists.
__all__ = ["FAMILIES", "METHODS", "RULES", "AllMaps", "ChannelData", "Engine", "FrameData", "Request", "Selection"]

BACKENDS = ("fast", "reference")


@dataclass(frozen=True)
class Selection:
    """The neurons a heatmap is conditioned on; see the module docstring.

    ``output``: class c in 0–9 or ``None``; ``hidden``: unit j of ``layer`` or ``None``;
    ``versus``: class c′ in 0–9, ≠ ``output``, or ``None`` (no contrast); needs ``output``;
    ``layer``: where ``hidden`` is: ``None`` (or ``"fc1"``) the hidden dense layer, else a conv layer of the
    model's family (``hidden`` a channel).
    """

    output: int | None = None
    hidden: int | None = None
    versus: int | None = None
    layer: str | None = None


@dataclass(frozen=True)
class Request:
    """One drawing to explain.

    ``image``: ``(28, 28)`` float32 in [0, 1] (from ``server.raster.rasterize``);
    ``method``: a key of :data:`server.explain.methods.METHODS`; ``rule``: a preset of
    the model's family (used by ``"lrp"`` and for the edges), ``None`` for the family's default;
    ``knockout``: distinct hidden units in 0…H−1 (at most H) whose outputs are
    forced to zero; ``heatmap``: ``False`` computes every number but the map (an on-pause method while the
    visitor draws: mode ``attribution``, an all-zero heatmap).
    """

    image: np.ndarray
    selection: Selection
    method: str = "lrp"
    rule: str | None = "epsilon"
    knockout: tuple[int, ...] = ()
    heatmap: bool = True


@dataclass(frozen=True)
class ChannelData:
    """One conv layer of a frame: ``activations (C, h, w)``, the block's output after ReLU and max-pooling,
    and ``relevance (C,)``, each channel's relevance for the explained class (zennit-crp's
    ``ChannelConcept.attribute``, unnormalised), float32."""

    activations: np.ndarray
    relevance: np.ndarray


@dataclass(frozen=True)
class FrameData:
    """Everything a frame shows for one request; arrays float32 unless stated.

    Attributes
    ----------
    prediction:
        Arg-max class.
    probabilities, logits:
        ``(10,)`` softmax and raw outputs.
    activations:
        ``(H,)`` ReLU outputs of ``fc1``.
    target:
        The class explained: ``selection.output``, else ``prediction``.
    mode:
        ``"lrp"``, ``"crp"``, ``"hidden"``, ``"contrast"`` or ``"attribution"``.
    hidden_relevance:
        ``(H,)`` ``R_j`` for class ``target`` under ``rule`` (``edges[:, target]``);
        in mode ``"contrast"`` each neuron's share of ``z_c − z_c′``
        (``edges[:, target] − edges[:, versus]``); zeros in mode
        ``"attribution"``, where no relevance reaches the hidden layer.
    edges:
        ``(H, 10)`` message ``R(j→c)`` along every hidden→output edge, each class
        started from its own logit, under ``rule`` (in every mode).
    heatmap:
        ``(28, 28)`` relevance of each pixel for the selection; positive = for.
    conservation:
        ``input_sum`` (Σ heatmap), ``hidden_sum`` (the relevance the map
        starts from at the hidden layer: Σ_j R_j in mode lrp, R(j→c) in crp,
        ``z_j`` in hidden, 0 in attribution) and ``logit`` (of ``target``;
        ``z_c − z_c′`` in contrast). Without biases and with ε or z⁺,
        ``input_sum = hidden_sum = logit``.
    versus:
        The rival class c′ in mode ``"contrast"``, else ``None``.
    class_max_abs:
        max|R| of the LRP map of ``target`` under ``rule`` (modes ``lrp`` and
        ``crp``; ``None`` otherwise): the scale a CRP map is drawn on by
        default, so that a neuron carrying little of the class's relevance looks faint.
    neuron_share:
        Mode ``crp``: ``|R(j→target)| / Σ_k |R(k→target)|``, the selected
        neuron's share of all relevance reaching the hidden layer for the
        class, in [0, 1]; ``None`` otherwise.
    neuron_silent:
        Mode ``hidden``: whether the neuron is silent (``z_j ≤ 0``); its map
        is then the ε decomposition of ``z_j`` whatever the rule (positive =
        pushes toward firing; :data:`~server.explain.rules.SILENT_NEURON_RULE`).
        ``None`` in other modes.
    knockout:
        With units knocked out, the intact network's reading and each unit's
        share and effect (:class:`~server.explain.knockout.KnockoutEffect`); else ``None``.
    channels:
        A convolutional network's conv layers by name (:class:`ChannelData`); ``None`` for an MLP.
    feeds:
        With a channel of a conv layer selected in mode ``crp``: ``(layer below, (C,))``, each channel of the
        conv layer below by how much of the selected channel's relevance for the class it carries (the
        edges into it of zennit-crp's ``AttributionGraph``); ``None`` otherwise.
    """

    prediction: int
    probabilities: np.ndarray
    logits: np.ndarray
    activations: np.ndarray
    target: int
    mode: Mode
    hidden_relevance: np.ndarray
    edges: np.ndarray
    heatmap: np.ndarray
    conservation: dict[str, float]
    versus: int | None = None
    class_max_abs: float | None = None
    neuron_share: float | None = None
    neuron_silent: bool | None = None
    knockout: KnockoutEffect | None = None
    channels: dict[str, ChannelData] | None = None
    feeds: tuple[str, np.ndarray] | None = None


@dataclass(frozen=True)
class Batch:
    """A batch's numbers before they are cut into frames: ``z1``, ``a`` ``(B, H)``, ``logits (B, 10)``,
    ``edges (B, H, 10)``, ``heatmaps (B, 784)`` float64 arrays; per request its prediction, target, mode,
    ``class_max_abs`` and, for a cnn, its channels and feeds (:class:`FrameData`)."""

    z1: np.ndarray
    a: np.ndarray
    logits: np.ndarray
    predictions: list[int]
    targets: list[int]
    modes: list[Mode]
    edges: np.ndarray
    heatmaps: np.ndarray
    class_max_abs: list[float]
    channels: list[dict[str, ChannelData]] | None = None
    feeds: list[tuple[str, np.ndarray] | None] | None = None


@dataclass(frozen=True)
class AllMaps:
    """Every map of a batch under one rule: ``classes (B, 10, 28, 28)``, ``hidden (B, H, 28, 28)`` float32."""

    classes: np.ndarray
    hidden: np.ndarray


def _is_index(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_image(image: object, where: str) -> None:
    """Raise ``ValueError`` unless ``image`` is a finite ``(28, 28)`` float array in [0, 1]."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{where}: image must be a numpy array, got {type(image).__name__}")
    if image.shape != IMAGE_SHAPE:
        raise ValueError(f"{where}: image shape must be {IMAGE_SHAPE}, got {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{where}: image dtype must be floating point, got {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError(f"{where}: image contains NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{where}: image values must lie in [0, 1], got range [{low}, {high}]")


def check_rule(rule: object, where: str, family: Family = FAMILIES["mlp"]) -> None:
    if rule not in family.rules:
        raise ValueError(f"{where}: unknown rule {rule!r} for a {family.name}; "
                         f"expected one of {', '.join(family.rules)}")


def check_request(request: object, index: int, hidden: int, family: Family = FAMILIES["mlp"],
                  channels: dict[str, int] | None = None) -> None:
    """Raise ``ValueError`` naming what is wrong with ``request`` number ``index``."""
    if isinstance(request, Request):
        check_image(request.image, f"request {index}")
    check_selection(request, index, hidden, family, channels)


def check_selection(request: object, index: int, hidden: int, family: Family = FAMILIES["mlp"],
                    channels: dict[str, int] | None = None) -> None:
    """:func:`check_request` of everything but the image."""
    where = f"request {index}"
    if not isinstance(request, Request):
        raise ValueError(f"{where}: expected a Request, got {type(request).__name__}")
    selection = request.selection
    if not isinstance(selection, Selection):
        raise ValueError(f"{where}: selection must be a Selection, got {type(selection).__name__}")
    if selection.output is not None and not (_is_index(selection.output) and 0 <= selection.output < N_CLASSES):
        raise ValueError(f"{where}: output class must be an integer in 0..{N_CLASSES - 1} or None, "
                         f"got {selection.output!r}")
    widths = {HIDDEN_LAYER: hidden, **(channels or {})}
    if selection.layer is not None and selection.layer not in widths:
        raise ValueError(f"{where}: unknown layer {selection.layer!r} for a {family.name}; "
                         f"expected one of {', '.join(widths)} or None")
    width = widths[selection.layer or HIDDEN_LAYER]
    if selection.layer not in (None, HIDDEN_LAYER) and selection.versus is not None:
        raise ValueError(f"{where}: a contrast (versus) goes through a unit of {HIDDEN_LAYER} or the whole "
                         f"network, not a channel of {selection.layer!r}")
    if selection.hidden is not None and not (_is_index(selection.hidden) and 0 <= selection.hidden < width):
        raise ValueError(f"{where}: hidden neuron must be an integer in 0..{width - 1} or None, "
                         f"got {selection.hidden!r}")
    if selection.versus is not None and not (_is_index(selection.versus) and 0 <= selection.versus < N_CLASSES
                                             and selection.output is not None and selection.versus != selection.output):
        raise ValueError(f"{where}: versus must be a class in 0..{N_CLASSES - 1} other than output, with output "
                         f"set, or None; got versus {selection.versus!r}, output {selection.output!r}")
    check_knockout(request.knockout, where, hidden)
    if request.method not in family.methods:
        raise ValueError(f"{where}: unknown method {request.method!r} for a {family.name}; "
                         f"expected one of {', '.join(family.methods)}")
    check_rule(family.default_rule if request.rule is None else request.rule, where, family)


def check_knockout(knockout: object, where: str, hidden: int) -> None:
    """Raise ``ValueError`` unless ``knockout`` is a tuple of at most ``hidden`` distinct units in range."""
    if not isinstance(knockout, tuple) or not all(_is_index(j) and 0 <= j < hidden for j in knockout):
        raise ValueError(f"{where}: knockout must be a tuple of hidden units in 0..{hidden - 1}, got {knockout!r}")
    if len(set(knockout)) != len(knockout):
        raise ValueError(f"{where}: knockout lists a unit twice: {knockout!r}")


def request_mode(request: Request) -> Mode:
    """The mode of ``request`` (:func:`server.explain.modes.mode_of`)."""
    selection = request.selection
    return mode_of(request.method, selection.output, selection.hidden, selection.versus, selection.layer)


class Engine:
    """LRP, CRP and captum explanations of one model, for batches of drawings.

    Parameters
    ----------
    model:
        A store model (``model_store.load_model``) of a family of :data:`FAMILIES`: the MLP
        ``Sequential(flatten, fc1, relu, fc2)`` or the LeNet of ``build_cnn``.
        The engine works on a private deep copy.
    backend:
        ``"fast"`` (closed form, default) or ``"reference"`` (zennit / zennit-crp,
        one library call per map; for tests and benchmarks).
    randomized:
        Prepare the model-randomisation copies of :meth:`sanity` (fast
        backend, fixed seeds) now, once; ``False`` for an engine that never
        checks (the copies themselves).

    Attributes
    ----------
    hidden:
        Width H of the hidden dense layer ``fc1``.
    family:
        The model's :class:`~server.explain.family.Family`.
    channels:
        The channels of each conv layer a selection may name (empty for an MLP).
    """

    def __init__(self, model: nn.Module, backend: str = "fast", randomized: bool = True) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        # One intra-op thread: with two, batched calls stalled by 50 ms and more here.  NumPy's BLAS too (the
        # live lane's products), also where numpy was loaded before server/__init__.py could set it (a test, a
        # benchmark): with one thread per core a batch of 16 cost 7× as much on a busy machine.
        torch.set_num_threads(1)
        threadpool_limits(limits=1, user_api="blas")
        self.model = copy.deepcopy(model).float().eval()
        self.family = family_of(self.model)
        self.channels = {name: shape[0] for name, shape in self.family.conv_shapes.items()}
        fc2 = linear_layer(self.model, "fc2")
        self.hidden = linear_layer(self.model, "fc1").out_features
        self._w2 = fc2.weight.detach().double().numpy()
        self._b2 = fc2.bias.detach().double().numpy()
        self.backend = backend
        self._relevance = self.family.backends[backend](self.model)
        # The live frames of an MLP skip torch (server.explain.live); a cnn's and the reference's go through it.
        self._live = LiveLane(self._relevance) if isinstance(self._relevance, FastBackend) else None
        self._randomized = {label: [Engine(randomized_model(self.model, layers, k), randomized=False)
                                    for k in range(COPIES)]
                            for label, layers in self.family.randomizations} if randomized else {}

    def for_thread(self) -> "Engine":
        """An engine of the same model for another thread, sharing this one's read-only tensors.

        The model is copied again, and a reference backend built anew: captum and zennit attach hooks
        to the model they are given.  A fast backend's closed forms are only read, and are shared: they
        are most of an engine's memory (~100 MB for the 128-unit model with its 8 randomised copies, every rule used).
        Never call it on an engine that a thread is using: its model may carry that call's hooks.
        """
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        if self.backend == "reference":
            twin._relevance = self.family.backends[self.backend](twin.model)
        twin._randomized = {label: [engine.for_thread() for engine in engines]
                            for label, engines in self._randomized.items()}
        return twin

    def _forward(self, images: np.ndarray, keep: torch.Tensor | None = None) -> Forward:
        """The forward pass of checked ``images (B, 28, 28)``; ``keep``: see :func:`keep_mask`."""
        return self._relevance.forward(torch.from_numpy(images.reshape(len(images), -1)).to(DTYPE), keep)

    def explain(self, requests: Sequence[Request]) -> list[FrameData]:
        """Frame data for each request, in order.

        Raises ``ValueError`` naming the request and the problem (non-array,
        wrong shape, NaN, values outside [0, 1], unknown class, neuron, method
        or rule) before any tensor reaches the model.
        """
        images = self._check(requests)
        if not requests:
            return []
        lane = self._live_batch if self._live is not None and self._live.covers(
            [r.method for r in requests], [r.heatmap for r in requests], self._rules(requests)) else self._torch_batch
        return self._frames(requests, lane(images, requests))

    def _rules(self, requests: Sequence[Request]) -> list[str]:
        """Each request's preset, the family's default for ``None``."""
        return [self.family.default_rule if request.rule is None else request.rule for request in requests]

    def _check(self, requests: Sequence[Request]) -> np.ndarray:
        """:func:`check_request` of each request, the images of a batch at once (in the usual case, every
        image a float array of the right shape and fine, that costs four array calls, not four per image);
        the images stacked ``(B, 28, 28)``."""
        for index, request in enumerate(requests):
            check_selection(request, index, self.hidden, self.family, self.channels)
        images = [request.image for request in requests]
        if not all(isinstance(image, np.ndarray) and image.shape == IMAGE_SHAPE
                   and image.dtype.kind == "f" for image in images) \
                or (images and not (np.isfinite(stacked := np.stack(images)).all() and stacked.min() >= 0.0
                                    and stacked.max() <= 1.0)):
            for index, image in enumerate(images):  # name the first bad image and what is wrong with it
                check_image(image, f"request {index}")
        return stacked if images else np.zeros((0, *IMAGE_SHAPE), np.float32)

    def _live_batch(self, images: np.ndarray, requests: Sequence[Request]) -> "Batch":
        """The batch's numbers from the NumPy lane (:mod:`server.explain.live`), one call per rule."""
        assert self._live is not None
        x = images.reshape(len(images), -1).astype(np.float64)
        mask = keep_mask([request.knockout for request in requests], self.hidden, DTYPE)
        keep = None if mask is None else mask.numpy()
        z1, a, logits = self._live.forward(x, keep)
        predictions = logits.argmax(axis=1).tolist()
        targets = [r.selection.output if r.selection.output is not None else p for r, p in zip(requests, predictions)]
        modes = [request_mode(request) for request in requests]
        rules = self._rules(requests)
        parts = []
        for rule in dict.fromkeys(rules):
            rows = [b for b in range(len(requests)) if rules[b] == rule]
            index: slice | list[int] = slice(None) if len(rows) == len(requests) else rows  # a view, or a copy
            parts.append((rows, self._live.explain(
                x[index], z1[index], a[index], logits[index], rule, [modes[b] for b in rows],
                [targets[b] for b in rows], [requests[b].selection.hidden for b in rows],
                [requests[b].selection.versus for b in rows], [requests[b].heatmap for b in rows])))
        if len(parts) == 1:  # one preset for the batch, the usual case: no indexed copies
            part = parts[0][1]
            return Batch(z1, a, logits, predictions, targets, modes, part.edges, part.maps,
                         part.class_max_abs.tolist())
        edges = np.empty((len(requests), self.hidden, N_CLASSES))
        heatmaps = np.empty((len(requests), INPUT_SIZE))
        class_max_abs = np.empty(len(requests))
        for rows, part in parts:
            edges[rows], heatmaps[rows], class_max_abs[rows] = part.edges, part.maps, part.class_max_abs
        return Batch(z1, a, logits, predictions, targets, modes, edges, heatmaps, class_max_abs.tolist())

    def _torch_batch(self, images: np.ndarray, requests: Sequence[Request]) -> "Batch":
        """The batch's numbers from the relevance backend and captum."""
        forward = self._forward(images, keep_mask([request.knockout for request in requests], self.hidden, DTYPE))
        predictions = forward.logits.argmax(dim=1).tolist()
        targets = [r.selection.output if r.selection.output is not None else p
                   for r, p in zip(requests, predictions)]
        modes = [request_mode(request) for request in requests]
        edges = torch.zeros(len(requests), self.hidden, N_CLASSES, dtype=DTYPE)
        heatmaps = torch.zeros(len(requests), INPUT_SIZE, dtype=DTYPE)
        class_max_abs = torch.zeros(len(requests), dtype=DTYPE)

        class_channels = {layer: torch.zeros(len(requests), width, dtype=DTYPE)
                          for layer, width in self.channels.items()}
        feeds: list[tuple[str, np.ndarray] | None] = [None] * len(requests)
        rules = self._rules(requests)
        for rule in dict.fromkeys(rules):
            rows = [b for b in range(len(requests)) if rules[b] == rule]
            starts = [start_of(modes[b], targets[b], requests[b].selection.hidden, requests[b].selection.versus,
                               requests[b].selection.layer) if requests[b].heatmap else None for b in rows]
            # The class's own LRP where the selected map is not it, in the same backward pass: a CRP map's
            # scale (class_max_abs) and, for a cnn, each channel's relevance for the class.
            extra = [b for b in rows if modes[b] == "crp" or (self.channels and modes[b] != "lrp")]
            result = self._relevance.explain(forward.rows(rows + extra), rule,
                                             starts + [Start("lrp", targets[b]) for b in extra])
            count = len(rows)
            rule_edges, rule_maps = result.edges[:count], result.maps[:count]
            if count == len(requests):  # one rule for the batch, the usual case: no indexed copies
                edges, heatmaps = rule_edges, rule_maps
            else:
                edges[rows], heatmaps[rows] = rule_edges, rule_maps
            class_max_abs[rows + extra] = result.maps.abs().amax(dim=1)
            for name, relevance in result.layers.items():
                class_channels[name][rows] = relevance[:count]
                class_channels[name][extra] = relevance[count:]
            for index, b in enumerate(rows):
                below = self._layer_below(requests[b].selection.layer)
                if modes[b] == "crp" and below is not None:  # the pass conditioned on the channel: what feeds it
                    feeds[b] = (below, result.layers[below][index].float().numpy())

        # captum's perturbation methods enlarge the batch: one call per method, layer and knock-out, mask (1, H).
        for method, layer, knockout in {(r.method, r.selection.layer, r.knockout) for r in requests
                                        if r.method != "lrp" and r.heatmap}:
            rows = [b for b, r in enumerate(requests)
                    if (r.method, r.selection.layer, r.knockout) == (method, layer, knockout) and r.heatmap]
            inputs = forward.x[rows].float().reshape(-1, 1, *IMAGE_SHAPE)
            conv_layer = layer if method in CONV_METHODS and layer in self.channels else None
            with knocked_out(self.model, keep_mask([knockout], self.hidden, torch.float32)):
                maps = attribute(self.model, method, inputs, [targets[b] for b in rows], conv_layer)
            heatmaps[rows] = maps.reshape(len(rows), -1).to(DTYPE)

        channels = [{layer: ChannelData(maps[b].float().numpy(), class_channels[layer][b].float().numpy())
                     for layer, maps in forward.feature_maps.items()} for b in range(len(requests))]
        return Batch(forward.z1.numpy(), forward.a.numpy(), forward.logits.numpy(), predictions, targets, modes,
                     edges.numpy(), heatmaps.numpy(), class_max_abs.tolist(), channels if self.channels else None,
                     feeds)

    def _layer_below(self, layer: str | None) -> str | None:
        """The conv layer below conv layer ``layer``; ``None`` for the first, or for ``fc1``."""
        layers = list(self.channels)
        return layers[layers.index(layer) - 1] if layer in layers[1:] else None

    def _frames(self, requests: Sequence[Request], batch: "Batch") -> list[FrameData]:
        """Frame data from the batch's arrays, converted to float32 once per batch, not per frame."""
        z1, logits, edges, heatmaps = batch.z1, batch.logits, batch.edges, batch.heatmaps
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        logits32, activations32 = logits.astype(np.float32), batch.a.astype(np.float32)
        edges32 = edges.astype(np.float32)
        heatmaps32 = heatmaps.reshape(-1, *IMAGE_SHAPE).astype(np.float32)
        input_sums = heatmaps.sum(axis=1).tolist()
        no_relevance = np.zeros(self.hidden, dtype=np.float32)
        channels, feeds = batch.channels, batch.feeds
        frames = []
        for b, (request, target, mode) in enumerate(zip(requests, batch.targets, batch.modes)):
            j, versus = request.selection.hidden, request.selection.versus if mode == "contrast" else None
            layer = request.selection.layer if request.selection.layer in self.channels else None
            hidden_relevance = edges32[b, :, target] if mode != "attribution" else no_relevance
            logit = float(logits[b, target])
            if layer is not None and j is not None and channels is not None and mode == "crp":
                hidden_sum = float(channels[b][layer].relevance[j])  # the channel's relevance for the class
                j = None  # no fc1 unit is selected: neuron_share is of fc1 units
            elif mode == "contrast":
                shares = edges[b, :, target] - edges[b, :, versus]
                hidden_relevance = shares.astype(np.float32)
                hidden_sum = float(shares.sum() if j is None else shares[j])
                logit -= float(logits[b, versus])
            elif mode == "lrp":
                hidden_sum = float(edges[b, :, target].sum())
            elif mode == "crp":
                hidden_sum = float(edges[b, j, target])
            elif mode == "hidden":
                hidden_sum = float(z1[b, j])
            else:
                hidden_sum = 0.0
            frames.append(FrameData(
                prediction=batch.predictions[b],
                probabilities=probabilities[b],
                logits=logits32[b],
                activations=activations32[b],
                target=target,
                mode=mode,
                hidden_relevance=hidden_relevance,
                edges=edges32[b],
                heatmap=heatmaps32[b],
                conservation={"input_sum": input_sums[b], "hidden_sum": hidden_sum, "logit": logit},
                versus=versus,
                class_max_abs=batch.class_max_abs[b] if MODES[mode].class_scale else None,
                neuron_share=share(edges[b, :, target], j) if mode == "crp" and j is not None else None,
                neuron_silent=bool(z1[b, j] <= 0) if mode == "hidden" else None,
                knockout=knockout_effect(z1[b], self._w2, self._b2, request.knockout) if request.knockout else None,
                channels=None if channels is None else channels[b],
                feeds=None if feeds is None else feeds[b],
            ))
        return frames

    def sanity(self, request: Request) -> tuple[FrameData, Sanity]:
        """The frame data of ``request`` and the sanity checks (:mod:`server.explain.sanity`) of its map.

        The randomised copies explain the same class as this model (their own
        prediction may differ) and the same neuron.  The deletion curve
        follows the class's logit (in mode ``contrast`` ``z_c − z_c′``), or for
        a neuron alone its pre-activation.
        Raises ``ValueError`` as :meth:`explain` does, or if the engine was
        built with ``randomized=False``.
        """
        if isinstance(request, Request) and request.rule is None:
            request = dataclasses.replace(request, rule=self.family.default_rule)
        check_request(request, 0, self.hidden, self.family, self.channels)
        if not self._randomized:
            raise ValueError("sanity: this engine was built without randomised copies (randomized=False)")
        frame = self.explain([request])[0]
        hidden, versus = request.selection.hidden, frame.versus
        same = request if frame.mode == "hidden" else dataclasses.replace(
            request, selection=dataclasses.replace(request.selection, output=frame.target))
        randomized = {label: [engine.explain([same])[0].heatmap for engine in engines]
                      for label, engines in self._randomized.items()}

        def score(images: np.ndarray) -> np.ndarray:
            forward = self._forward(images, keep_mask([request.knockout] * len(images), self.hidden, DTYPE))
            if frame.mode == "hidden":
                return forward.z1[:, hidden].numpy()
            rival = forward.logits[:, versus] if versus is not None else 0.0
            return (forward.logits[:, frame.target] - rival).numpy()

        seed = drawing_seed(torch.from_numpy(request.image), f"sanity:{request.method}:{request.rule}", frame.target)
        # A unit's or channel's map takes its shape from the layers below fc2: re-initialising fc2 alone cannot
        # change it, only the deepest step of the cascade can.
        counted = (self.family.randomizations[-1][0],) if frame.mode in ("crp", "hidden") else tuple(randomized)
        return frame, check(request.image, frame.heatmap, randomized, score, seed, PIXELS_PER_STEP, counted)

    def all_maps(self, images: np.ndarray, rule: str) -> AllMaps:
        """All 10 class maps and all H hidden-neuron maps of each image under ``rule``.

        Parameters
        ----------
        images:
            ``(B, 28, 28)`` float in [0, 1].
        rule:
            A key of :data:`server.explain.rules.RULES`.
        """
        if not isinstance(images, np.ndarray) or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"images must be a (B, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}) numpy array, "
                             f"got {getattr(images, 'shape', images)!r}")
        if not (np.issubdtype(images.dtype, np.floating) and np.isfinite(images).all()
                and images.min(initial=0.0) >= 0.0 and images.max(initial=0.0) <= 1.0):
            # Name the first offending image, with the reason.
            for index, image in enumerate(images):
                check_image(image, f"image {index}")
        check_rule(rule, "all_maps", self.family)
        classes, hidden = self._relevance.all_maps(self._forward(images), rule)
        batch = len(images)
        return AllMaps(classes.reshape(batch, N_CLASSES, *IMAGE_SHAPE).float().numpy(),
                       hidden.reshape(batch, self.hidden, *IMAGE_SHAPE).float().numpy())


def share(relevance: np.ndarray, j: int) -> float:
    """``|relevance[j]| / Σ|relevance|``, 0 when all relevance is zero."""
    total = float(np.abs(relevance).sum())
    return float(abs(relevance[j]) / total) if total > 0 else 0.0
