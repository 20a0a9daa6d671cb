"""Knock-out: hidden units whose outputs are forced to zero, as a mask on the ReLU.

A knock-out is a tuple of distinct hidden units ``j`` (``fc1``'s outputs).  The
fast backend multiplies ``a = relu(z1)`` by the mask ``keep`` in its forward
pass (:meth:`server.explain.fast.FastBackend.forward`); hook-based libraries
(zennit, CRP, captum) get the same through :func:`knocked_out`, a forward hook
on the model's ``relu`` module, so their backward passes see the units zeroed
exactly as the forward pass made them.  :func:`knockout_effect` says what a
knock-out changed, for the page's "what if this neuron were gone?".
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def keep_mask(knockouts: Sequence[tuple[int, ...]], hidden: int, dtype: torch.dtype) -> torch.Tensor | None:
    """``(B, H)``: 1 for a unit in use, 0 for a knocked-out one; ``None`` when nothing is knocked out."""
    if not any(knockouts):
        return None
    keep = torch.ones(len(knockouts), hidden, dtype=dtype)
    for b, units in enumerate(knockouts):
        keep[b, list(units)] = 0.0
    return keep


@contextlib.contextmanager
def knocked_out(model: nn.Module, keep: torch.Tensor | None) -> Iterator[None]:
    """Within the block, the output of ``fc1``'s ReLU (the module after ``fc1``) is multiplied by ``keep``.

    ``keep``: ``(B, H)`` for calls on batches of exactly ``B`` samples, or
    ``(1, H)`` for any batch (captum's perturbation methods enlarge the batch);
    ``None``: nothing changes.
    """
    if keep is None:
        yield
        return
    handle = hidden_activation(model).register_forward_hook(lambda module, inputs, output: output * keep)
    try:
        yield
    finally:
        handle.remove()


def hidden_activation(model: nn.Module) -> nn.Module:
    """The module after ``fc1``: its ReLU (``relu`` in the MLP, ``relu3`` in the LeNet)."""
    names = [name for name, _ in model.named_children()]
    return model.get_submodule(names[names.index("fc1") + 1])


@dataclass(frozen=True)
class UnitEffect:
    """One knocked-out unit ``j``, measured on the intact network.

    ``share``: ``R_j / Σ_k |R_k|``, its signed share of the relevance reaching
    the hidden layer for the intact prediction (ε on ``fc2``:
    ``R_j ∝ a_j W2[c, j]``); ``delta_probability``: how the probability of the
    intact prediction changes when ``j`` alone is knocked out.
    """

    unit: int
    share: float
    delta_probability: float


@dataclass(frozen=True)
class KnockoutEffect:
    """What the knock-out changed: the intact network's ``prediction`` and ``probabilities (10,)``,
    and each knocked-out unit's :class:`UnitEffect`."""

    prediction: int
    probabilities: np.ndarray
    units: tuple[UnitEffect, ...]


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp: np.ndarray = np.exp(logits - logits.max(axis=-1, keepdims=True))  # numpy's stubs: Any
    exp /= exp.sum(axis=-1, keepdims=True)
    return exp


def knockout_effect(z1: np.ndarray, w2: np.ndarray, b2: np.ndarray, units: tuple[int, ...]) -> KnockoutEffect:
    """The :class:`KnockoutEffect` of ``units`` for one drawing's pre-activations ``z1 (H,)``.

    The output layer is linear in the hidden units, so knocking out ``j`` alone
    moves the logits by ``−W2[:, j] a_j``: one subtraction per unit, no forward pass.
    """
    activations = np.maximum(z1, 0.0)
    contributions = w2 * activations[None, :]  # (10, H): a_j W2[c, j]
    logits = contributions.sum(axis=1) + b2
    probabilities = _softmax(logits)
    prediction = int(np.argmax(logits))
    relevance = contributions[prediction]
    total = float(np.abs(relevance).sum())
    alone = _softmax(logits[None, :] - contributions[:, list(units)].T)  # (len(units), 10)
    return KnockoutEffect(prediction, probabilities.astype(np.float32), tuple(
        UnitEffect(j, float(relevance[j] / total) if total > 0 else 0.0,
                   float(alone[k, prediction] - probabilities[prediction]))
        for k, j in enumerate(units)))
