"""Knock-out: hidden units whose outputs are forced to zero, as a mask on the ReLU.

A knock-out is a tuple of distinct hidden units ``j`` (``fc1``'s outputs).  The
fast backend multiplies ``a = relu(z1)`` by the mask ``keep`` in its forward
pass (:meth:`server.explain.fast.FastBackend.forward`); hook-based libraries
(zennit, CRP, captum) get the same through :func:`knocked_out`, a forward hook
on the model's ``relu`` module, so their backward passes see the units zeroed
exactly as the forward pass made them.
"""

import contextlib
from collections.abc import Iterator, Sequence

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
    """Within the block, ``model.relu``'s output is multiplied by ``keep``.

    ``keep``: ``(B, H)`` for calls on batches of exactly ``B`` samples, or
    ``(1, H)`` for any batch (captum's perturbation methods enlarge the batch);
    ``None``: nothing changes.
    """
    if keep is None:
        yield
        return
    handle = model.relu.register_forward_hook(lambda module, inputs, output: output * keep)
    try:
        yield
    finally:
        handle.remove()
