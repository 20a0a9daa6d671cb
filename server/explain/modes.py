"""What a selection explains: the mode of a heatmap, decided in one table.

- ``output`` None, ``hidden`` None: mode ``lrp``, LRP of the predicted class;
- ``output`` c, ``hidden`` None: mode ``lrp``, LRP of class c;
- ``output`` c, ``hidden`` j: mode ``crp``, CRP ``conditions=[{'fc1': [j], 'y': [c]}]``;
- ``output`` None, ``hidden`` j: mode ``hidden``, unit j of ``fc1`` alone, started from
  its pre-activation ``z_j`` (CRP ``start_layer='fc1'``);
- ``layer`` a conv layer ``L`` (cnn family), ``hidden`` k: mode ``crp``,
  ``conditions=[{L: [k], 'y': [c]}]`` with c the output class, else the predicted one;
- ``versus`` c′ (needs ``output`` c ≠ c′): mode ``contrast``, why c and not c′:
  the backward pass started from ``z_c e_c − z_c′ e_c′``, which is
  LRP(c) − LRP(c′) (with ``hidden`` j: CRP(j, c) − CRP(j, c′));
- any method but ``"lrp"``: mode ``attribution``, another method's map of class c,
  else of the predicted class (``hidden`` and ``versus`` do not apply); without a
  heatmap (an on-pause method while the visitor draws) the map is all zeros.
"""

from dataclasses import dataclass
from typing import Literal

Mode = Literal["lrp", "crp", "hidden", "contrast", "attribution"]


@dataclass(frozen=True)
class ModeInfo:
    """What a mode computes.

    ``relevance``: the relevance backend computes its map (else another method, or none);
    ``class_scale``: its map is drawn on the scale of the class's own LRP map
    (``FrameData.class_max_abs``), so that a unit carrying little of the class looks faint.
    """

    relevance: bool
    class_scale: bool


MODES: dict[Mode, ModeInfo] = {
    "lrp": ModeInfo(relevance=True, class_scale=True),
    "crp": ModeInfo(relevance=True, class_scale=True),
    "hidden": ModeInfo(relevance=True, class_scale=False),
    "contrast": ModeInfo(relevance=True, class_scale=False),
    "attribution": ModeInfo(relevance=False, class_scale=False),
}

HIDDEN_LAYER = "fc1"  # the layer a selection's ``hidden`` names when it names no ``layer``


@dataclass(frozen=True)
class Start:
    """Where a selected map starts: ``mode`` "lrp" (class ``target``), "crp" (unit or channel
    ``hidden`` of ``layer`` towards class ``target``), "hidden" (unit ``hidden`` of ``fc1`` alone) or
    "contrast" (class ``target`` against class ``versus``, through ``hidden`` alone unless it is ``None``).

    ``layer``: ``None`` or ``"fc1"`` for a unit of the hidden dense layer; a conv layer's name for a channel.
    """

    mode: Literal["lrp", "crp", "hidden", "contrast"]
    target: int
    hidden: int | None = None
    versus: int | None = None
    layer: str | None = None


def mode_of(method: str, output: int | None, hidden: int | None, versus: int | None,
            layer: str | None = None) -> Mode:
    """The mode of the module docstring's list."""
    if method != "lrp":
        return "attribution"
    if versus is not None:
        return "contrast"
    if hidden is None:
        return "lrp"
    if output is not None or layer not in (None, HIDDEN_LAYER):
        return "crp"
    return "hidden"


def start_of(mode: Mode, target: int, hidden: int | None, versus: int | None, layer: str | None) -> Start | None:
    """Where the relevance backend starts the map of ``mode``; ``None`` where it computes none."""
    if mode == "attribution":
        return None
    return Start(mode, target, hidden, versus, layer)
