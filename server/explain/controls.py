"""Control "methods": maps computed from the drawing alone, which know nothing of the model.

A sanity check has power only if it fails maps that carry no model
information (Adebayo et al. 2018, "Sanity checks for saliency maps", §3: an
edge detector passes visual inspection yet is independent of the model).  Two
controls are offered beside the real methods, labelled as controls:

- ``ink``: the drawing itself, pixel intensity as the map;
- ``edges``: the Sobel gradient magnitude of the drawing (zero padding): the
  outline of the strokes, the control Adebayo et al. used.

Both are non-negative (magnitudes, not evidence for or against) and identical
for every model, class, rule and selection: the trust card must fail them.
"""

import numpy as np
import torch
from scipy import ndimage

CONTROL_METHODS = ("ink", "edges")


def ink_map(image: np.ndarray) -> np.ndarray:
    """``(28, 28)`` float32: the drawing itself."""
    return np.asarray(image, dtype=np.float32).copy()


def edge_map(image: np.ndarray) -> np.ndarray:
    """``(28, 28)`` float32 ≥ 0: ``√(sobel_x² + sobel_y²)`` of the drawing, blank outside the field."""
    pixels = np.asarray(image, dtype=np.float64)
    across, down = (ndimage.sobel(pixels, axis=axis, mode="constant") for axis in (1, 0))
    magnitude: np.ndarray = np.hypot(across, down).astype(np.float32)  # scipy's stubs return Any
    return magnitude


def control_maps(method: str, images: torch.Tensor) -> torch.Tensor:
    """``(B, 28, 28)`` float32 control maps of ``images (B, 1, 28, 28)``; ``method`` one of :data:`CONTROL_METHODS`."""
    if method not in CONTROL_METHODS:
        raise ValueError(f"unknown control {method!r}; expected one of {', '.join(CONTROL_METHODS)}")
    make = ink_map if method == "ink" else edge_map
    drawings = images.detach().float().numpy().reshape(len(images), *images.shape[-2:])
    return torch.from_numpy(np.stack([make(drawing) for drawing in drawings]))
