"""What the server offers a visitor: models (from the store), methods and rules (from the engine)."""

from dataclasses import dataclass
from typing import Any

from model_store.sizes import IMAGE_SHAPE, INPUT_SIZE, N_CLASSES
from server.explain.family import Family
from server.explain.modes import HIDDEN_LAYER

from .protocol import ModelOptions, Options


@dataclass(frozen=True)
class ModelInfo:
    """One model of the store: ``layers`` sizes (784, H, 10), accuracies as fractions or ``None``,
    ``sha256`` of its weights file (its version) or ``None``; its ``family`` (``mlp``, ``cnn``), ``rules``
    and ``methods`` (the names its family can run), ``default_rule``, and ``units``: each layer as
    ``{"name", "kind", "shape"}`` (``kind`` ``input``, ``conv``, ``dense`` or ``output``; a conv layer's shape
    is its pooled feature maps ``[C, h, w]``, what a frame carries)."""

    name: str
    hidden: int
    layers: tuple[int, ...]
    val_accuracy: float | None
    test_accuracy: float | None
    sha256: str | None = None
    family: str = "mlp"
    rules: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    default_rule: str = ""
    units: tuple[dict[str, Any], ...] = ()

    @property
    def channels(self) -> dict[str, int]:
        """Each conv layer's channels."""
        return {unit["name"]: unit["shape"][0] for unit in self.units if unit["kind"] == "conv"}


@dataclass(frozen=True)
class MethodInfo:
    """An attribution method: ``cost`` is ``per-frame`` or ``on-pause``; ``signed``: its maps hold
    evidence for and against (else magnitudes only); ``control``: a map of the drawing alone, which
    knows nothing of the model (the trust card must fail it); ``description``: what it computes, with its
    parameters (patch, superpixels, samples, steps), printed under its map in the comparison."""

    name: str
    label: str
    cost: str
    signed: bool
    control: bool = False
    description: str = ""


@dataclass(frozen=True)
class RuleInfo:
    name: str
    label: str
    description: str


@dataclass(frozen=True)
class Catalog:
    """Models, methods and rules by name, in the order the page lists them."""

    default_model: str
    models: dict[str, ModelInfo]
    methods: dict[str, MethodInfo]
    rules: dict[str, RuleInfo]

    def options(self) -> Options:
        """The names a visitor may choose, for :class:`server.protocol.VisitorState`."""
        return Options(models={name: ModelOptions({HIDDEN_LAYER: info.hidden, **info.channels}, info.rules,
                                                  info.methods, info.default_rule)
                               for name, info in self.models.items()},
                       methods={name: info.cost for name, info in self.methods.items()},
                       default_model=self.default_model)

    def on_pause(self, method: str) -> bool:
        """Whether ``method`` is computed only once the drawing is still."""
        return self.methods[method].cost == "on-pause"


def model_info(record: dict[str, Any], family: Family) -> ModelInfo:
    """A :class:`ModelInfo` from a manifest entry of ``model_store.model_record`` and the model's family."""
    hidden = int(record["hidden"])
    layers = tuple(record.get("architecture", {}).get("layers", (INPUT_SIZE, hidden, N_CLASSES)))
    units = ({"name": "input", "kind": "input", "shape": list(IMAGE_SHAPE)},
             *({"name": name, "kind": "conv", "shape": list(shape)} for name, shape in family.conv_shapes.items()),
             {"name": HIDDEN_LAYER, "kind": "dense", "shape": [hidden]},
             {"name": "fc2", "kind": "output", "shape": [N_CLASSES]})
    return ModelInfo(name=record["name"], hidden=hidden, layers=layers,
                     val_accuracy=record.get("val_accuracy"), test_accuracy=record.get("test_accuracy"),
                     sha256=record.get("sha256"), family=family.name, rules=tuple(family.rules),
                     methods=family.methods, default_rule=family.default_rule, units=units)
