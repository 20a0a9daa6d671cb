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
alone would start from 1).  What a selection explains:

- ``output`` None, ``hidden`` None: mode ``lrp``, LRP of the predicted class;
- ``output`` c, ``hidden`` None: mode ``lrp``, LRP of class c;
- ``output`` c, ``hidden`` j: mode ``crp``, CRP ``conditions=[{'fc1': [j], 'y': [c]}]``;
- ``output`` None, ``hidden`` j: mode ``hidden``, neuron j alone, started from
  its pre-activation ``z_j`` (CRP ``start_layer='fc1'``);
- ``versus`` c′ (needs ``output`` c ≠ c′): mode ``contrast``, why c and not c′:
  the backward pass started from ``z_c e_c − z_c′ e_c′``, which is
  LRP(c) − LRP(c′) (with ``hidden`` j: CRP(j, c) − CRP(j, c′));
- any method but ``"lrp"``: mode ``attribution``, a captum map of class c, else
  of the predicted class (``hidden`` and ``versus`` do not apply).

A request's ``knockout`` lists hidden units whose outputs are forced to zero:
the prediction, activations, edges and every map follow from that forward pass.

An engine owns a private copy of the model (zennit, CRP and captum attach
hooks to the model they are given): create one engine per worker thread.
"""

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from model_store.architecture import linear_layer
from model_store.sizes import IMAGE_SHAPE, INPUT_SIZE, N_CLASSES

from .backend import RelevanceBackend
from .faithfulness import PIXELS_PER_STEP
from .fast import DTYPE, FastBackend, Forward, Start
from .knockout import KnockoutEffect, keep_mask, knocked_out, knockout_effect
from .methods import METHODS, attribute, drawing_seed
from .reference import ReferenceBackend
from .rules import RULES
from .sanity import COPIES, RANDOMIZATIONS, Sanity, check, randomized_model

# The engine's public names; METHODS and RULES are the catalogues the page lists.
__all__ = ["METHODS", "RULES", "AllMaps", "Engine", "FrameData", "Request", "Selection"]

BACKENDS: dict[str, Callable[[nn.Module], RelevanceBackend]] = {"fast": FastBackend, "reference": ReferenceBackend}
Mode = Literal["lrp", "crp", "hidden", "contrast", "attribution"]  # what a selection explains: the list above


@dataclass(frozen=True)
class Selection:
    """The neurons a heatmap is conditioned on; see the module docstring.

    ``output``: class c in 0–9 or ``None``; ``hidden``: neuron j in 0…H−1 or ``None``;
    ``versus``: class c′ in 0–9, ≠ ``output``, or ``None`` (no contrast); needs ``output``.
    """

    output: int | None = None
    hidden: int | None = None
    versus: int | None = None


@dataclass(frozen=True)
class Request:
    """One drawing to explain.

    ``image``: ``(28, 28)`` float32 in [0, 1] (from ``server.raster.rasterize``);
    ``method``: a key of :data:`server.explain.methods.METHODS`; ``rule``: a key
    of :data:`server.explain.rules.RULES` (used by ``"lrp"`` and for the edges);
    ``knockout``: distinct hidden units in 0…H−1 (at most H) whose outputs are
    forced to zero.
    """

    image: np.ndarray
    selection: Selection
    method: str = "lrp"
    rule: str = "epsilon"
    knockout: tuple[int, ...] = ()


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


def check_rule(rule: object, where: str) -> None:
    if rule not in RULES:
        raise ValueError(f"{where}: unknown rule {rule!r}; expected one of {', '.join(RULES)}")


def check_request(request: object, index: int, hidden: int) -> None:
    """Raise ``ValueError`` naming what is wrong with ``request`` number ``index``."""
    where = f"request {index}"
    if not isinstance(request, Request):
        raise ValueError(f"{where}: expected a Request, got {type(request).__name__}")
    check_image(request.image, where)
    selection = request.selection
    if not isinstance(selection, Selection):
        raise ValueError(f"{where}: selection must be a Selection, got {type(selection).__name__}")
    if selection.output is not None and not (_is_index(selection.output) and 0 <= selection.output < N_CLASSES):
        raise ValueError(f"{where}: output class must be an integer in 0..{N_CLASSES - 1} or None, "
                         f"got {selection.output!r}")
    if selection.hidden is not None and not (_is_index(selection.hidden) and 0 <= selection.hidden < hidden):
        raise ValueError(f"{where}: hidden neuron must be an integer in 0..{hidden - 1} or None, "
                         f"got {selection.hidden!r}")
    if selection.versus is not None and not (_is_index(selection.versus) and 0 <= selection.versus < N_CLASSES
                                             and selection.output is not None and selection.versus != selection.output):
        raise ValueError(f"{where}: versus must be a class in 0..{N_CLASSES - 1} other than output, with output "
                         f"set, or None; got versus {selection.versus!r}, output {selection.output!r}")
    check_knockout(request.knockout, where, hidden)
    if request.method not in METHODS:
        raise ValueError(f"{where}: unknown method {request.method!r}; expected one of {', '.join(METHODS)}")
    check_rule(request.rule, where)


def check_knockout(knockout: object, where: str, hidden: int) -> None:
    """Raise ``ValueError`` unless ``knockout`` is a tuple of at most ``hidden`` distinct units in range."""
    if not isinstance(knockout, tuple) or not all(_is_index(j) and 0 <= j < hidden for j in knockout):
        raise ValueError(f"{where}: knockout must be a tuple of hidden units in 0..{hidden - 1}, got {knockout!r}")
    if len(set(knockout)) != len(knockout):
        raise ValueError(f"{where}: knockout lists a unit twice: {knockout!r}")


def mode_of(request: Request) -> Mode:
    """The mode of the module docstring's list."""
    if request.method != "lrp":
        return "attribution"
    if request.selection.versus is not None:
        return "contrast"
    if request.selection.hidden is None:
        return "lrp"
    return "crp" if request.selection.output is not None else "hidden"


class Engine:
    """LRP, CRP and captum explanations of one model, for batches of drawings.

    Parameters
    ----------
    model:
        ``Sequential(flatten, fc1, relu, fc2)`` (``model_store.load_model``).
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
        Width H of the hidden layer.
    """

    def __init__(self, model: nn.Module, backend: str = "fast", randomized: bool = True) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
        # One intra-op thread: with two, batched calls stalled by 50 ms and more here.
        torch.set_num_threads(1)
        self.model = copy.deepcopy(model).float().eval()
        fc2 = linear_layer(self.model, "fc2")
        self.hidden = linear_layer(self.model, "fc1").out_features
        self._w2 = fc2.weight.detach().double().numpy()
        self._b2 = fc2.bias.detach().double().numpy()
        self.backend = backend
        self._relevance = BACKENDS[backend](self.model)
        self._randomized = {label: [Engine(randomized_model(self.model, layers, k), randomized=False)
                                    for k in range(COPIES)]
                            for label, layers in RANDOMIZATIONS} if randomized else {}

    def for_thread(self) -> "Engine":
        """An engine of the same model for another thread, sharing this one's read-only tensors.

        The model is copied again, and a reference backend built anew: captum and zennit attach hooks
        to the model they are given.  A fast backend's closed forms are only read, and are shared: they
        are most of an engine's memory (~100 MB for the 128-unit model with its 8 randomised copies, every rule used).
        Never call it on an engine that a thread is using: its model may carry that call's hooks.
        """
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        if not isinstance(self._relevance, FastBackend):
            twin._relevance = BACKENDS[self.backend](twin.model)
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
        for index, request in enumerate(requests):
            check_request(request, index, self.hidden)
        if not requests:
            return []
        forward = self._forward(np.stack([request.image for request in requests]),
                                keep_mask([request.knockout for request in requests], self.hidden, DTYPE))
        predictions = forward.logits.argmax(dim=1).tolist()
        targets = [r.selection.output if r.selection.output is not None else p
                   for r, p in zip(requests, predictions)]
        modes = [mode_of(request) for request in requests]
        edges = torch.zeros(len(requests), self.hidden, N_CLASSES, dtype=DTYPE)
        heatmaps = torch.zeros(len(requests), INPUT_SIZE, dtype=DTYPE)
        class_max_abs = torch.zeros(len(requests), dtype=DTYPE)

        for rule in {request.rule for request in requests}:
            rows = [b for b, request in enumerate(requests) if request.rule == rule]
            starts = [start_of(modes[b], targets[b], requests[b].selection) for b in rows]
            rule_edges, rule_maps = self._relevance.relevance(forward.rows(rows), rule, starts)
            if len(rows) == len(requests):  # one rule for the batch, the usual case: no indexed copies
                edges, heatmaps = rule_edges, rule_maps
            else:
                edges[rows], heatmaps[rows] = rule_edges, rule_maps
            class_max_abs[rows] = rule_maps.abs().amax(dim=1)
            crp_rows = [b for b in rows if modes[b] == "crp"]
            if crp_rows:
                _, class_maps = self._relevance.relevance(
                    forward.rows(crp_rows), rule, [Start("lrp", targets[b]) for b in crp_rows])
                class_max_abs[crp_rows] = class_maps.abs().amax(dim=1)

        # captum's perturbation methods enlarge the batch: one call per method and knock-out, mask (1, H).
        for method, knockout in {(r.method, r.knockout) for r in requests if r.method != "lrp"}:
            rows = [b for b, r in enumerate(requests) if (r.method, r.knockout) == (method, knockout)]
            images = forward.x[rows].float().reshape(-1, 1, *IMAGE_SHAPE)
            with knocked_out(self.model, keep_mask([knockout], self.hidden, torch.float32)):
                maps = attribute(self.model, method, images, [targets[b] for b in rows])
            heatmaps[rows] = maps.reshape(len(rows), -1).to(DTYPE)

        return self._frames(forward, requests, predictions, targets, modes, edges.numpy(), heatmaps.numpy(),
                            class_max_abs.tolist())

    def _frames(self, forward: Forward, requests: Sequence[Request], predictions: list[int], targets: list[int],
                modes: list[Mode], edges: np.ndarray, heatmaps: np.ndarray,
                class_max_abs: list[float]) -> list[FrameData]:
        """Frame data from the batch's arrays, converted to float32 once per batch, not per frame."""
        z1, logits = forward.z1.numpy(), forward.logits.numpy()
        probabilities = torch.softmax(forward.logits, dim=1).float().numpy()
        logits32, activations32 = logits.astype(np.float32), forward.a.float().numpy()
        edges32 = edges.astype(np.float32)
        heatmaps32 = heatmaps.reshape(-1, *IMAGE_SHAPE).astype(np.float32)
        input_sums = heatmaps.sum(axis=1)
        no_relevance = np.zeros(self.hidden, dtype=np.float32)
        frames = []
        for b, (request, target, mode) in enumerate(zip(requests, targets, modes)):
            j, versus = request.selection.hidden, request.selection.versus if mode == "contrast" else None
            hidden_relevance = edges32[b, :, target] if mode != "attribution" else no_relevance
            logit = float(logits[b, target])
            if mode == "contrast":
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
                prediction=predictions[b],
                probabilities=probabilities[b],
                logits=logits32[b],
                activations=activations32[b],
                target=target,
                mode=mode,
                hidden_relevance=hidden_relevance,
                edges=edges32[b],
                heatmap=heatmaps32[b],
                conservation={"input_sum": float(input_sums[b]), "hidden_sum": hidden_sum, "logit": logit},
                versus=versus,
                class_max_abs=class_max_abs[b] if mode in ("lrp", "crp") else None,
                neuron_share=share(edges[b, :, target], j) if mode == "crp" and j is not None else None,
                neuron_silent=bool(z1[b, j] <= 0) if mode == "hidden" else None,
                knockout=knockout_effect(z1[b], self._w2, self._b2, request.knockout) if request.knockout else None,
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
        check_request(request, 0, self.hidden)
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
        # A neuron's maps take their shape from fc1 alone: re-initialising fc2 cannot change it.
        counted = ("fc2+fc1",) if frame.mode in ("crp", "hidden") else tuple(randomized)
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
        check_rule(rule, "all_maps")
        classes, hidden = self._relevance.all_maps(self._forward(images), rule)
        batch = len(images)
        return AllMaps(classes.reshape(batch, N_CLASSES, *IMAGE_SHAPE).float().numpy(),
                       hidden.reshape(batch, self.hidden, *IMAGE_SHAPE).float().numpy())


def start_of(mode: Mode, target: int, selection: Selection) -> Start | None:
    """Where the relevance backend starts the map of ``mode``; ``None`` for a captum attribution."""
    if mode == "attribution":
        return None
    return Start(mode, target, selection.hidden, selection.versus)


def share(relevance: np.ndarray, j: int) -> float:
    """``|relevance[j]| / Σ|relevance|``, 0 when all relevance is zero."""
    total = float(np.abs(relevance).sum())
    return float(abs(relevance[j]) / total) if total > 0 else 0.0
