"""What the server offers a visitor: models (from the store), methods and rules (from the engine)."""

from dataclasses import dataclass
from typing import Any

from model_store.sizes import INPUT_SIZE, N_CLASSES

from .protocol import Options


@dataclass(frozen=True)
class ModelInfo:
    """One model of the store: ``layers`` sizes (784, H, 10), accuracies as fractions or ``None``,
    ``sha256`` of its weights file (its version) or ``None``."""

    name: str
    hidden: int
    layers: tuple[int, ...]
    val_accuracy: float | None
    test_accuracy: float | None
    sha256: str | None = None


@dataclass(frozen=True)
class MethodInfo:
    """An attribution method: ``cost`` is ``per-frame`` or ``on-pause``; ``signed``: its maps hold
    evidence for and against (else magnitudes only); ``control``: a map of the drawing alone, which
    knows nothing of the model (the trust card must fail it)."""

    name: str
    label: str
    cost: str
    signed: bool
    control: bool = False


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
        return Options(models={name: info.hidden for name, info in self.models.items()},
                       methods={name: info.cost for name, info in self.methods.items()},
                       rules=tuple(self.rules), default_model=self.default_model)

    def on_pause(self, method: str) -> bool:
        """Whether ``method`` is computed only once the drawing is still."""
        return self.methods[method].cost == "on-pause"


def model_info(record: dict[str, Any]) -> ModelInfo:
    """A :class:`ModelInfo` from a manifest entry of ``model_store.model_record``."""
    layers = tuple(record.get("architecture", {}).get("layers", (INPUT_SIZE, record["hidden"], N_CLASSES)))
    return ModelInfo(name=record["name"], hidden=int(record["hidden"]), layers=layers,
                     val_accuracy=record.get("val_accuracy"), test_accuracy=record.get("test_accuracy"),
                     sha256=record.get("sha256"))
