"""The interface both relevance backends share: :mod:`server.explain.fast` and :mod:`server.explain.reference`."""

from collections.abc import Sequence
from typing import Protocol

import torch

from .forward import Forward, Relevance
from .modes import Start


class RelevanceBackend(Protocol):
    """LRP and CRP maps of one model, in ``DTYPE``; the two backends agree to rounding."""

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> Forward:
        """The forward pass of ``x (B, 784)`` in [0, 1]; ``keep``: see :class:`~server.explain.fast.Forward`."""
        ...

    def relevance(
        self, forward: Forward, rule: str, starts: Sequence[Start | None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges ``(B, H, 10)`` and one selected map per sample ``(B, 784)``; a ``None`` start gives zeros."""
        ...

    def explain(self, forward: Forward, rule: str, starts: Sequence[Start | None]) -> Relevance:
        """:meth:`relevance` and each conv layer's channel relevances of the same pass."""
        ...

    def all_maps(self, forward: Forward, rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        """All class maps ``(B, 10, 784)`` and all hidden-neuron maps ``(B, H, 784)``."""
        ...
