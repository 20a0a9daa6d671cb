"""The networks the demo explains, one builder per family.

- ``mlp``: 784 → H (ReLU) → 10 (:func:`build_model`);
- ``cnn``: a LeNet, conv 1→8 (5×5) → ReLU → max-pool 2 → conv 8→16 (5×5) → ReLU →
  max-pool 2 → 256 → H (ReLU) → 10 (:func:`build_cnn`).  Only layers that zennit's
  composites handle exactly: convolutions and linear layers (each gets a rule),
  ReLU (passed), max-pooling (the gradient: relevance goes to the winner), no
  batch norm (it would need a canonizer).  No padding: the feature maps a frame
  carries stay small (pooled 8 × 12 × 12 and 16 × 4 × 4 bytes).

The module names are an interface: CRP conditions (``{'fc1': [j], 'y': [c]}``,
``{'conv2': [k], 'y': [c]}``), the rule presets and the page's diagram all refer
to them.
"""

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

# The geometry lives in model_store.families (no torch: the manifest checks read it); named here too.
from .families import CNN, CNN_CHANNELS, CNN_FLAT, CNN_KERNEL, CNN_MODULES, CNN_POOL, CNN_POOLED_PX, MLP, MLP_MODULES
from .sizes import INPUT_SIZE, N_CLASSES

LAYER_NAMES = MLP_MODULES
CNN_LAYER_NAMES = CNN_MODULES
__all__ = ["CNN_CHANNELS", "CNN_FLAT", "CNN_KERNEL", "CNN_LAYER_NAMES", "CNN_POOL", "CNN_POOLED_PX", "LAYER_NAMES",
           "build", "build_cnn", "build_model", "hidden_width", "linear_layer"]


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


def build_cnn(hidden: int) -> nn.Sequential:
    """Return an untrained LeNet of the module docstring with ``hidden`` units in ``fc1``.

    Takes raw pixels in [0, 1], shape ``(B, 1, 28, 28)``, with no normalisation
    layer (so that ZBox's bounds are the pixels' own, 0 and 1); returns ``(B, 10)`` logits.
    """
    if hidden < 1:
        raise ValueError(f"hidden width must be >= 1, got {hidden}")
    first, second = CNN_CHANNELS
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, first, CNN_KERNEL),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(CNN_POOL),
            conv2=nn.Conv2d(first, second, CNN_KERNEL),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(CNN_POOL),
            flatten=nn.Flatten(),
            fc1=nn.Linear(CNN_FLAT, hidden),
            relu3=nn.ReLU(),
            fc2=nn.Linear(hidden, N_CLASSES),
        )
    )


def build(family: str, hidden: int) -> nn.Sequential:
    """An untrained network of ``family`` (``"mlp"`` or ``"cnn"``) with ``hidden`` units in ``fc1``."""
    builders = {MLP: build_model, CNN: build_cnn}
    if family not in builders:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(builders)}")
    return builders[family](hidden)


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
