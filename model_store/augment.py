"""Random affine transforms and elastic distortion of digit batches.

Both act on one sampling grid, so a batch is resampled once
(``torch.nn.functional.grid_sample``, bilinear, zero padding).
Elastic distortion follows Simard et al. 2003, "Best practices for
convolutional neural networks applied to visual document analysis", §2:
a uniform random displacement field smoothed by a Gaussian of width σ and
scaled by α (both in pixels).
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; a range of zero switches one off.

    Angles in degrees, shifts and elastic α, σ in pixels of the 28×28 image.
    """

    rotate_deg: float = 0.0
    scale_min: float = 1.0
    scale_max: float = 1.0
    shear: float = 0.0
    shift_px: float = 0.0
    elastic_alpha_px: float = 0.0
    elastic_sigma_px: float = 4.0

    @property
    def enabled(self) -> bool:
        return any(
            (self.rotate_deg, self.scale_min != 1.0, self.scale_max != 1.0, self.shear,
             self.shift_px, self.elastic_alpha_px)
        )


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    "mild": AugmentConfig(rotate_deg=10, scale_min=0.9, scale_max=1.1, shift_px=2.0),
    "affine": AugmentConfig(rotate_deg=15, scale_min=0.85, scale_max=1.15, shift_px=2.5),
    "elastic": AugmentConfig(
        rotate_deg=15, scale_min=0.85, scale_max=1.15, shear=0.2, shift_px=2.5,
        elastic_alpha_px=34.0, elastic_sigma_px=4.0,
    ),
}


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def affine_matrices(n: int, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """``(n, 2, 3)`` matrices mapping output to input coordinates in [-1, 1]."""
    angle = torch.deg2rad(_uniform(n, -config.rotate_deg, config.rotate_deg, generator))
    scale = _uniform(n, config.scale_min, config.scale_max, generator)
    shear = _uniform(n, -config.shear, config.shear, generator)
    shift = _uniform(2 * n, -config.shift_px, config.shift_px, generator).view(n, 2) * (2 / 28)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map A = R(angle) · Shear · scale; grid_sample wants its inverse
    forward = torch.stack(
        [torch.stack([cos, cos * shear - sin], 1), torch.stack([sin, sin * shear + cos], 1)], 1
    ) * scale.view(n, 1, 1)
    inverse = torch.linalg.inv(forward)
    offset = -(inverse @ shift.unsqueeze(-1))
    return torch.cat([inverse, offset], dim=2)


def _smoothing_matrix(sigma_px: float, size: int = 28) -> torch.Tensor:
    """``(size, size)`` Gaussian blur with reflected borders, as a matrix.

    Blurring a field ``F`` is then ``K @ F @ K.T``: two small matrix products,
    far cheaper than a 25-tap convolution over thousands of maps.
    """
    radius = max(1, math.ceil(3 * sigma_px))
    taps = torch.arange(-radius, radius + 1)
    weights = torch.exp(-0.5 * (taps.float() / sigma_px) ** 2)
    weights = weights / weights.sum()
    matrix = torch.zeros(size, size)
    for row in range(size):
        source = row + taps
        source = torch.where(source < 0, -source, source)  # reflect at 0
        source = torch.where(source >= size, 2 * (size - 1) - source, source)  # reflect at size-1
        matrix[row].index_add_(0, source.clamp(0, size - 1), weights)
    return matrix


def elastic_displacement(
    n: int, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """``(n, 28, 28, 2)`` smooth random displacement in grid units ([-1, 1] = 28 px)."""
    field = torch.rand(n, 2, 28, 28, generator=generator) * 2 - 1
    blur = _smoothing_matrix(config.elastic_sigma_px)
    field = blur @ field @ blur.T
    return field.permute(0, 2, 3, 1) * config.elastic_alpha_px * (2 / 28)


def augment(images: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Return a randomly transformed copy of ``images`` ``(N, 1, 28, 28)`` in [0, 1]."""
    if not config.enabled:
        return images
    n = images.shape[0]
    grid = F.affine_grid(affine_matrices(n, config, generator), list(images.shape), align_corners=False)
    if config.elastic_alpha_px:
        grid = grid + elastic_displacement(n, config, generator)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
