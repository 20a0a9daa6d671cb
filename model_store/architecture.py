"""The network every part of the demo explains: 784 → H (ReLU) → 10.

The module names are an interface: CRP conditions (``{'fc1': [j], 'y': [c]}``),
the rule presets and the page's diagram all refer to ``fc1`` and ``fc2``.
"""

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

from .sizes import INPUT_SIZE, N_CLASSES

LAYER_NAMES = ("flatten", "fc1", "relu", "fc2")


def build_model(hidden: int) -> nn.Sequential:
    """Return an untrained ``Sequential(flatten, fc1, relu, fc2)``.

    Parameters
    ----------
    hidden:
        Width H of the single hidden ReLU layer, ``>= 1``.

    The model takes raw pixels in [0, 1], shape ``(B, 1, 28, 28)`` or
    ``(B, 784)``, with no normalisation layer, and returns ``(B, 10)`` logits.
    """
    if hidden < 1:
        raise ValueError(f"hidden width must be >= 1, got {hidden}")
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            fc1=nn.Linear(INPUT_SIZE, hidden),
            relu=nn.ReLU(),
            fc2=nn.Linear(hidden, N_CLASSES),
        )
    )


def hidden_width(state: dict[str, torch.Tensor]) -> int:
    """Read H off a state dict of :func:`build_model`'s layout."""
    return int(state["fc1.weight"].shape[0])


def linear_layer(model: nn.Module, name: Literal["fc1", "fc2"]) -> nn.Linear:
    """The Linear layer ``name`` of a :func:`build_model` network.

    Typed for mypy: torch types a submodule read as an attribute (``model.fc1``) ``Tensor | Module``.
    """
    layer = model.get_submodule(name)
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"{name} must be an nn.Linear, got {type(layer).__name__}")
    return layer
