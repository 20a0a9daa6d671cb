"""LRP and CRP by the reference libraries, zennit 0.4.6 and zennit-crp 0.6.0.

The definition of correct for :mod:`server.explain.fast`, and the baseline of
``benchmarks/engine.py``: every map is one library call.

- LRP map of class ``c``: ``zennit.attribution.Gradient`` under the preset's
  ``NameMapComposite``, with the output relevance ``y ⊙ onehot(c)``: zennit
  starts from whatever vector it is given (a one-hot would start from 1), and
  CRP starts from the logit, so the logit-valued one-hot makes both agree.
- CRP map of hidden neuron ``j`` towards class ``c``:
  ``CondAttribution(conditions=[{'fc1': [j], 'y': [c]}])``.
- neuron ``j`` alone: ``CondAttribution(conditions=[{'fc1': [j]}], start_layer='fc1')``,
  which starts from the neuron's pre-activation ``z_j``; under
  :data:`~server.explain.rules.SILENT_NEURON_RULE` (ε) if the neuron is silent
  (``z_j ≤ 0``).
- hidden relevances ``R_j`` for class ``c``: ``CondAttribution([{'y': [c]}],
  record_layer=['fc1'])``.  Conditioning ``fc1`` itself would report its
  recorded relevances doubled (``exclude_parallel=True``), so ``fc1`` is only
  recorded here, never conditioned.
- contrast of class ``c`` against ``c′``: ``Gradient`` started from
  ``y ⊙ (onehot(c) − onehot(c′))``; through hidden neuron ``j``: the CRP map
  of ``(j, c)`` minus that of ``(j, c′)``.
- a knock-out: a forward hook on the ReLU multiplies its output by ``keep``,
  so zennit's and CRP's backward passes see the zeroed units as the forward
  pass made them.

Only ``crp.attribution`` is imported: ``crp.visualization`` and ``crp.image``
import torchvision, which cannot load here, and ``crp.helper`` uses ``np.int``
(gone in numpy 2) in a code path ``CondAttribution`` does not touch.
"""

import copy
from collections.abc import Sequence

import torch
from crp.attribution import CondAttribution
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import NameMapComposite
from zennit.core import Hook
from zennit.rules import AlphaBeta, Epsilon, Gamma, ZBox, ZPlus

from model_store.architecture import LAYER_NAMES
from model_store.sizes import IMAGE_SHAPE

from .forward import DTYPE, Forward, Relevance
from .knockout import knocked_out
from .modes import Start
from .rules import RULES, SILENT_NEURON_RULE, LayerRule, RuleInfo


def zennit_rule(rule: LayerRule) -> Hook:
    """The zennit 0.4.6 rule object of ``rule``."""
    if rule.kind == "epsilon":
        return Epsilon(epsilon=rule.epsilon)
    if rule.kind == "zplus":
        return ZPlus()
    if rule.kind == "alpha_beta":
        return AlphaBeta(alpha=rule.alpha, beta=rule.beta)
    if rule.kind == "gamma":
        return Gamma(gamma=rule.gamma)
    if rule.kind == "zbox":
        return ZBox(low=rule.low, high=rule.high)
    raise ValueError(f"unknown LRP rule kind {rule.kind!r}")


def composite(info: RuleInfo) -> NameMapComposite:
    """A ``NameMapComposite`` naming the rule of every layer of the preset."""
    return NameMapComposite([([name], zennit_rule(rule)) for name, rule in info.layers.items()])


class ReferenceBackend:
    """The maps of :class:`server.explain.fast.FastBackend`, each from one zennit / CRP call.

    Parameters
    ----------
    model:
        ``Sequential(flatten, fc1, relu, fc2)``.  The backend keeps a private
        deep copy: zennit and CRP attach hooks to it and ``CondAttribution``
        switches its parameters' ``requires_grad`` off.  The copy computes in
        ``DTYPE`` (float64), like the fast backend, so the two agree to
        rounding even where an LRP denominator comes close to zero.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = copy.deepcopy(model).to(DTYPE).eval()
        # By name, as modules: torch types an attribute read (``model.fc1``) ``Tensor | Module``.
        self.flatten, self.fc1, self.relu, self.fc2 = (self.model.get_submodule(name) for name in LAYER_NAMES)
        self.attribution = CondAttribution(self.model)
        self.composites = {name: composite(info) for name, info in RULES.items()}
        self.silent = NameMapComposite([(["fc1"], zennit_rule(SILENT_NEURON_RULE))])

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> Forward:
        """The forward pass of ``x (B, 784)`` of ``DTYPE`` through the model's own modules."""
        with torch.no_grad(), knocked_out(self.model, keep):
            z1 = self.fc1(self.flatten(x))
            a = self.relu(z1)
            return Forward(x, z1, a, self.fc2(a), keep)

    def lrp_maps(self, x: torch.Tensor, targets: Sequence[int], rule: str,
                 versus: Sequence[int] | None = None) -> torch.Tensor:
        """``(N, 784)`` LRP maps of class ``targets[n]`` for ``x (N, 784)``: one zennit call.

        ``versus``: the contrast of ``targets[n]`` against ``versus[n]``, started from the logit difference.
        """
        start = torch.nn.functional.one_hot(torch.as_tensor(list(targets)), 10).to(x)
        if versus is not None:
            start = start - torch.nn.functional.one_hot(torch.as_tensor(list(versus)), 10).to(x)
        attributor = Gradient(model=self.model, composite=self.composites[rule])
        relevance: torch.Tensor  # zennit ships no type information
        _, relevance = attributor(x, lambda logits: logits * start)
        return relevance

    def crp_maps(self, x: torch.Tensor, pairs: Sequence[tuple[int, int]], rule: str) -> torch.Tensor:
        """``(N, 784)`` CRP maps, ``pairs[n] = (j, c)``: ``{'fc1': [j], 'y': [c]}``; one CRP call."""
        conditions = [{"fc1": [j], "y": [c]} for j, c in pairs]
        result = self.attribution(self._image(x), conditions, self.composites[rule])
        heatmap: torch.Tensor = result.heatmap  # CRP ships no type information
        return heatmap.reshape(len(pairs), -1)

    def hidden_maps(self, x: torch.Tensor, neurons: Sequence[int], rule: str) -> torch.Tensor:
        """``(N, 784)`` maps of neuron ``neurons[n]`` alone (``start_layer='fc1'``).

        One CRP call for the active neurons under ``rule``, one for the silent
        ones under :data:`~server.explain.rules.SILENT_NEURON_RULE`.
        """
        z1 = self.forward(x).z1[torch.arange(len(neurons)), list(neurons)]
        maps = torch.zeros(len(neurons), x.shape[1], dtype=x.dtype)
        for rows, rule_composite in ((z1 > 0, self.composites[rule]), (z1 <= 0, self.silent)):
            if rows.any():
                conditions = [{"fc1": [j]} for j, row in zip(neurons, rows.tolist()) if row]
                result = self.attribution(self._image(x[rows]), conditions, rule_composite, start_layer="fc1")
                maps[rows] = result.heatmap.reshape(len(conditions), -1).detach()
        return maps

    def hidden_relevance(self, x: torch.Tensor, targets: Sequence[int], rule: str) -> torch.Tensor:
        """``(N, H)`` relevance ``R_j`` at ``fc1`` for class ``targets[n]``; one CRP call."""
        conditions = [{"y": [c]} for c in targets]
        result = self.attribution(self._image(x), conditions, self.composites[rule], record_layer=["fc1"])
        relevance: torch.Tensor = result.relevances["fc1"]  # CRP ships no type information
        return relevance

    @staticmethod
    def _image(x: torch.Tensor) -> torch.Tensor:
        # CRP sums its heatmap over dim 1 (channels): give it (N, 1, 28, 28).
        return x.detach().reshape(-1, 1, *IMAGE_SHAPE).clone().requires_grad_(True)

    def edges(self, forward: Forward, rule: str) -> torch.Tensor:
        """``(B, H, 10)`` messages ``R(j→c)``: one CRP call per class."""
        batch = len(forward.x)
        return torch.stack([self.hidden_relevance(forward.x, [c] * batch, rule) for c in range(10)], dim=2)

    def relevance(
        self, forward: Forward, rule: str, starts: Sequence[Start | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges ``(B, H, 10)`` and one selected map per sample ``(B, 784)``, one library call per map.

        A ``None`` start asks for no map: its row is zeros.
        """
        rows = []
        for b, selected in enumerate(starts):
            with knocked_out(self.model, None if forward.keep is None else forward.keep[b:b + 1]):
                rows.append(self._map(forward.x[b:b + 1], selected, rule))
        with knocked_out(self.model, forward.keep):
            edges = self.edges(forward, rule)
        return edges, torch.cat(rows).detach()

    def _map(self, x: torch.Tensor, selected: Start | None, rule: str) -> torch.Tensor:
        match selected:
            case Start(mode="lrp", target=c):
                return self.lrp_maps(x, [c], rule)
            case Start(mode="crp", target=c, hidden=j) if j is not None:
                return self.crp_maps(x, [(j, c)], rule)
            case Start(mode="hidden", hidden=j) if j is not None:
                return self.hidden_maps(x, [j], rule)
            case Start(mode="contrast", target=c, hidden=None, versus=v) if v is not None:
                return self.lrp_maps(x, [c], rule, versus=[v])
            case Start(mode="contrast", target=c, hidden=j, versus=v) if j is not None and v is not None:
                return self.crp_maps(x, [(j, c)], rule) - self.crp_maps(x, [(j, v)], rule)
            case None:
                return torch.zeros_like(x)
        raise ValueError(f"unknown start {selected!r}")

    def explain(self, forward: Forward, rule: str, starts: Sequence[Start | None]) -> Relevance:
        """:meth:`relevance`; a dense network has no channels."""
        edges, maps = self.relevance(forward, rule, starts)
        return Relevance(edges, maps, {})

    def all_maps(self, forward: Forward, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Class maps ``(B, 10, 784)`` and hidden maps ``(B, H, 784)``, one library call per map."""
        classes, hidden = [], []
        for b in range(len(forward.x)):
            x = forward.x[b:b + 1]
            classes.append(torch.cat([self.lrp_maps(x, [c], rule) for c in range(10)]))
            hidden.append(torch.cat([self.hidden_maps(x, [j], rule) for j in range(forward.z1.shape[1])]))
        return torch.stack(classes).detach(), torch.stack(hidden).detach()
