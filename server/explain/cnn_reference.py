"""LRP and CRP on the LeNet by the reference libraries: zennit 0.4.6's named composites and zennit-crp 0.6.0.

The definition of correct for :mod:`server.explain.cnn`: every map is one
``CondAttribution`` call under zennit's own composite object
(:data:`COMPOSITES`), so a preset is checked against the composite it is named
after, not against our reading of it.  CRP starts from the logit, as the fast
backend does.

- LRP map of class ``c``: ``conditions=[{'y': [c]}]``;
- CRP map of unit ``j`` of ``fc1`` or channel ``k`` of ``conv1``/``conv2``: ``{layer: [j], 'y': [c]}``
  (``ChannelConcept``, the default ``mask_map``);
- ``fc1`` unit ``j`` alone: ``{'fc1': [j]}`` with ``start_layer='fc1'``;
- contrast: the difference of the two maps (relevance is linear in where it starts);
- edges and channel relevances: ``record_layer`` on an unconditioned pass (a
  conditioned layer's recorded relevance is doubled, FACTS.md).
"""

import copy
from collections.abc import Callable, Sequence

import torch
from crp.attribution import CondAttribution
from torch import nn
from zennit.composites import EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat
from zennit.core import Composite

from model_store.sizes import IMAGE_PX, N_CLASSES

from .cnn import CONV_LAYERS, CONV_SHAPES, ConvBackend, ConvForward
from .forward import DTYPE, Forward, Relevance
from .knockout import knocked_out
from .modes import Start

# The pixels' real bounds: the model takes raw pixels in [0, 1].
COMPOSITES: dict[str, Callable[[], Composite]] = {
    "epsilon_gamma_box": lambda: EpsilonGammaBox(low=0.0, high=1.0),
    "epsilon_plus_flat": EpsilonPlusFlat,
    "epsilon_alpha2_beta1_flat": EpsilonAlpha2Beta1Flat,
    "epsilon_plus": EpsilonPlus,
}


class ConvReferenceBackend:
    """The maps of :class:`~server.explain.cnn.ConvBackend`, each from one zennit-crp call.

    Parameters
    ----------
    model:
        A ``build_cnn`` network; the backend keeps a private float64 deep copy (CRP switches its
        parameters' ``requires_grad`` off and attaches hooks).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).to(DTYPE).eval()
        self.attribution = CondAttribution(self.model)
        self.composites = {name: make() for name, make in COMPOSITES.items()}
        self._forward = ConvBackend(self.model)  # the forward pass only: tensors the backward pass never sees

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> ConvForward:
        """The forward pass of ``x (B, 784)``; checked against the model's own modules in the tests."""
        return self._forward.forward(x, keep)

    def _attribute(self, x: torch.Tensor, conditions: list[dict[str, list[int]]], rule: str,
                   keep: torch.Tensor | None, **options: object) -> object:
        image = x.detach().reshape(-1, 1, IMAGE_PX, IMAGE_PX).clone().requires_grad_(True)
        with knocked_out(self.model, keep):
            return self.attribution(image, conditions, self.composites[rule], **options)

    def maps(self, x: torch.Tensor, conditions: list[dict[str, list[int]]], rule: str,
             keep: torch.Tensor | None = None, start_layer: str | None = None) -> torch.Tensor:
        """``(N, 784)`` heatmaps of ``conditions`` (one per sample of ``x``); one CRP call."""
        options = {"start_layer": start_layer} if start_layer else {}
        result = self._attribute(x, conditions, rule, keep, **options)
        heatmap: torch.Tensor = result.heatmap  # type: ignore[attr-defined]  # CRP ships no types
        return heatmap.detach().reshape(len(conditions), -1)

    def recorded(self, x: torch.Tensor, targets: Sequence[int], rule: str, layers: list[str],
                 keep: torch.Tensor | None = None, through: Sequence[tuple[str, int] | None] | None = None
                 ) -> dict[str, torch.Tensor]:
        """The relevance at each of ``layers``' outputs for the LRP of class ``targets[n]``, conditioned on
        channel ``through[n]`` (``None``: unconditioned)."""
        conditions: list[dict[str, list[int]]] = []
        for n, c in enumerate(targets):
            channel = through[n] if through else None
            conditions.append({"y": [c], **({channel[0]: [channel[1]]} if channel else {})})
        result = self._attribute(x, conditions, rule, keep, record_layer=layers)
        relevances: dict[str, torch.Tensor] = result.relevances  # type: ignore[attr-defined]
        return {layer: relevances[layer].detach() for layer in layers}

    def edges(self, forward: Forward, rule: str) -> torch.Tensor:
        """``(B, H, 10)`` messages ``R(j→c)``: the relevance at ``fc1`` for each class, one CRP call per class."""
        batch = len(forward.x)
        return torch.stack([self.recorded(forward.x, [c] * batch, rule, ["fc1"], forward.keep)["fc1"]
                            for c in range(N_CLASSES)], dim=2)

    def channels(self, forward: Forward, rule: str, targets: Sequence[int],
                 conditions: Sequence[tuple[str, int] | None] | None = None) -> dict[str, torch.Tensor]:
        """``{layer: (B, C)}``: ``ChannelConcept.attribute`` (unnormalised) of each conv layer for ``targets``,
        through channel ``conditions[b]`` if given (AttributionGraph's edges into it)."""
        recorded = self.recorded(forward.x, targets, rule, list(CONV_LAYERS), forward.keep, conditions)
        return {layer: relevance.sum(dim=(2, 3)) for layer, relevance in recorded.items()}

    def relevance(
        self, forward: Forward, rule: str, starts: Sequence[Start | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges ``(B, H, 10)`` and one selected map per sample ``(B, 784)``, one library call per map."""
        rows = []
        for b, selected in enumerate(starts):
            keep = None if forward.keep is None else forward.keep[b:b + 1]
            rows.append(self._map(forward.x[b:b + 1], selected, rule, keep))
        return self.edges(forward, rule), torch.cat(rows)

    def explain(self, forward: Forward, rule: str, starts: Sequence[Start | None]) -> Relevance:
        """:meth:`relevance` and each conv layer's channel relevances: for an LRP or a channel's start, what
        ``record_layer`` records in the same CondAttribution call (below a conditioned channel: what each
        channel feeds it); zeros for the other starts, whose channels no caller reads."""
        edges, maps = self.relevance(forward, rule, starts)
        layers = {layer: torch.zeros(len(starts), shape[0], dtype=DTYPE) for layer, shape in CONV_SHAPES.items()}
        for b, selected in enumerate(starts):
            if selected is None or selected.mode != "lrp" and selected.layer not in CONV_LAYERS:
                continue
            through = [(selected.layer, selected.hidden)] if selected.layer in CONV_LAYERS and \
                selected.hidden is not None else None
            keep = None if forward.keep is None else forward.keep[b:b + 1]
            recorded = self.recorded(forward.x[b:b + 1], [selected.target], rule, list(CONV_LAYERS), keep, through)
            for layer in CONV_LAYERS:
                layers[layer][b] = recorded[layer].sum(dim=(2, 3))[0]
        return Relevance(edges, maps, layers)

    def _map(self, x: torch.Tensor, selected: Start | None, rule: str, keep: torch.Tensor | None) -> torch.Tensor:
        if selected is None:
            return torch.zeros_like(x)
        if selected.mode == "hidden" and selected.hidden is not None:
            return self.maps(x, [{"fc1": [selected.hidden]}], rule, keep, start_layer="fc1")
        condition: dict[str, list[int]] = {}
        if selected.hidden is not None:
            condition[selected.layer or "fc1"] = [selected.hidden]
        classes = [selected.target] + ([selected.versus] if selected.mode == "contrast" and selected.versus is not None
                                       else [])
        maps = [self.maps(x, [{**condition, "y": [c]}], rule, keep) for c in classes]
        return maps[0] - maps[1] if len(maps) == 2 else maps[0]

    def all_maps(self, forward: Forward, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Class maps ``(B, 10, 784)`` and ``fc1`` unit maps alone ``(B, H, 784)``, one library call per map."""
        classes, units = [], []
        for b in range(len(forward.x)):
            x = forward.x[b:b + 1]
            classes.append(torch.cat([self.maps(x, [{"y": [c]}], rule) for c in range(N_CLASSES)]))
            units.append(torch.cat([self.maps(x, [{"fc1": [j]}], rule, start_layer="fc1")
                                    for j in range(forward.z1.shape[1])]))
        return torch.stack(classes), torch.stack(units).float()
