"""Model families: what the engine needs to know of each kind of network, told in one place (:data:`FAMILIES`).

A family is its architecture's layers, its rule presets and its two relevance
backends (closed form and reference); the engine, the catalogue and the
protocol ask the family of a model instead of branching on its kind.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from torch import nn

from .backend import RelevanceBackend
from .cnn import CNN_RULES, CONV_LAYERS, CONV_SHAPES, DEFAULT_CNN_RULE, ConvBackend
from .cnn_reference import ConvReferenceBackend
from .fast import FastBackend
from .methods import CONV_METHODS, METHODS
from .reference import ReferenceBackend
from .rules import DEFAULT_RULE, RULES, RuleInfo
from .sanity import CNN_RANDOMIZATIONS, RANDOMIZATIONS


@dataclass(frozen=True)
class Family:
    """One kind of network.

    ``rules``: its presets by name, ``default_rule`` among them; ``backends``: ``"fast"`` and
    ``"reference"``; ``conv_layers``: the layers whose channels a selection may name (besides ``fc1``);
    ``randomizations``: the sanity checks' cascade of re-initialised layers, top first, by label;
    ``conv_shapes``: each conv layer's pooled feature maps ``(C, h, w)``, what a frame carries;
    ``methods``: the names of :data:`~server.explain.methods.METHODS` it can run, in catalogue order.
    """

    name: str
    rules: dict[str, RuleInfo]
    default_rule: str
    backends: dict[str, Callable[[nn.Module], RelevanceBackend]]
    randomizations: tuple[tuple[str, tuple[str, ...]], ...] = RANDOMIZATIONS
    conv_shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @cached_property
    def conv_layers(self) -> tuple[str, ...]:
        return tuple(self.conv_shapes)

    @cached_property
    def methods(self) -> tuple[str, ...]:
        return tuple(name for name in METHODS if self.conv_layers or name not in CONV_METHODS)


FAMILIES: dict[str, Family] = {
    "mlp": Family("mlp", RULES, DEFAULT_RULE, {"fast": FastBackend, "reference": ReferenceBackend}),
    "cnn": Family("cnn", CNN_RULES, DEFAULT_CNN_RULE, {"fast": ConvBackend, "reference": ConvReferenceBackend},
                  CNN_RANDOMIZATIONS, CONV_SHAPES),
}


def family_of(model: nn.Module) -> Family:
    """The family of a store model: a ``cnn`` has convolutions ``conv1`` and ``conv2``, an ``mlp`` none."""
    names = {name for name, _ in model.named_children()}
    return FAMILIES["cnn" if set(CONV_LAYERS) <= names else "mlp"]
