"""A forward pass as the relevance backends share it, and the precision they compute in."""

from dataclasses import dataclass

import torch

# Both backends compute in float64 (all hidden-neuron maps are only expanded in
# float32, see unit_maps).  A γ or ZBox denominator can come within 1e-3 of
# zero, far above the 1e-6 stabiliser, while its float32 rounding is ~1e-7 of
# Σ|w x| ≈ 10: the map of such a neuron then moves by 1e-4 with the order of
# summation.  In float64 fast and reference agree to ~1e-12.
DTYPE = torch.float64


@dataclass(frozen=True)
class Forward:
    """One forward pass: ``x (B, 784)`` in [0, 1], ``z1``, ``a`` ``(B, H)``, ``logits (B, 10)``; ``DTYPE``.

    ``keep``: ``(B, H)`` 1 for a hidden unit in use, 0 for one knocked out
    (its output ``a_j`` is 0 whatever ``z1_j``); ``None``: none knocked out.
    """

    x: torch.Tensor
    z1: torch.Tensor
    a: torch.Tensor
    logits: torch.Tensor
    keep: torch.Tensor | None = None

    @property
    def feature_maps(self) -> dict[str, torch.Tensor]:
        """Each conv layer's output after ReLU and pooling, ``(B, C, h, w)``; a dense network has none."""
        return {}

    def rows(self, rows: list[int]) -> "Forward":
        """The forward pass of the samples ``rows`` only (itself if that is every sample: no copies)."""
        if rows == list(range(len(self.x))):
            return self
        keep = None if self.keep is None else self.keep[rows]
        return Forward(self.x[rows], self.z1[rows], self.a[rows], self.logits[rows], keep)


@dataclass(frozen=True)
class Relevance:
    """One backward pass of a batch: ``edges (B, H, 10)``, the selected ``maps (B, 784)`` (``DTYPE``), and
    ``layers``: each conv layer's relevance per channel ``(B, C)`` at its output (an MLP has none)."""

    edges: torch.Tensor
    maps: torch.Tensor
    layers: dict[str, torch.Tensor]
