"""Faithfulness and sanity metrics of a heatmap: rank correlation, deletion and insertion curves, AOPC.

Pure numpy, no model: the caller evaluates the images these functions build.

- **Rank correlation** (Spearman's ρ) of two maps over the ink pixels, on
  absolute values: the model-randomisation test of Adebayo et al. 2018
  ("Sanity checks for saliency maps") asks whether a map changes when the
  weights it explains are destroyed.  Absolute values, because a map whose
  signs all flip has not become independent of the drawing; ink pixels only,
  because the many blank pixels, zero in most maps, would tie and inflate ρ.
- **Deletion** (pixel flipping, Samek et al. 2017, "Evaluating the
  visualization of what a deep neural network has learned"): remove the
  pixels in order of decreasing relevance, ``PIXELS_PER_STEP`` at a time
  (set them to 0, the blank background), and follow the target logit.
  ``AOPC = 1/(L+1) Σ_k (f(x⁰) − f(xᵏ))``: the larger, the faster the map's
  most relevant pixels destroy the evidence.
- **Insertion** (Petsiuk et al. 2018, RISE): start from the blank canvas and
  put the pixels back in the same order; ``AOPC = 1/(L+1) Σ_k (f(xᵏ) − f(blank))``.

- **Reference orders for deletion** (:func:`random_ink_order`,
  :func:`least_relevant_ink_order`): a random order over the *ink* pixels
  only, and the map's own order reversed over the ink (least relevant first,
  pixel flipping with both orders, Samek et al. 2017; ROAD, Rong et al.
  2022).  A random order over all 784 pixels would spend ~80 % of its
  deletions on blank pixels, which change nothing: any map that ranks ink
  first, the drawing itself included, beat it.

Deletion rewards maps that rank ink first; insertion rewards maps whose
first pixels alone rebuild the evidence.  They disagree (a map can delete
well by ranking any ink first), so they are read together.  Ties (many
pixels share a relevance, e.g. zero on the background) are broken by a
random order seeded from the caller, so the curves never depend on
``argsort``'s tie order.
"""

import numpy as np
from scipy.stats import rankdata

PIXELS_PER_STEP = 10
STEPS = 20  # L: 200 pixels, about the ink of a digit (MNIST digits average ~150 non-zero pixels)


def rank_correlation(first: np.ndarray, second: np.ndarray, ink: np.ndarray) -> float | None:
    """Spearman's ρ of ``|first|`` and ``|second|`` over the pixels where ``ink`` is true.

    ``None`` (undefined, never 0) when fewer than two ink pixels exist or
    either map is constant there, e.g. empty: a constant map carries no
    ranking to compare.
    """
    a, b = np.abs(first[ink]).ravel(), np.abs(second[ink]).ravel()
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def relevance_order(relevance: np.ndarray, seed: int) -> np.ndarray:
    """Pixel indices (of the flattened map) by decreasing relevance, ties in a random order from ``seed``."""
    shuffled = np.random.default_rng(seed).permutation(relevance.size)
    return shuffled[np.argsort(-relevance.ravel()[shuffled], kind="stable")]


def random_order(size: int, seed: int) -> np.ndarray:
    """A random order of all ``size`` pixels from ``seed`` (blank ones included)."""
    return np.random.default_rng(seed).permutation(size)


def random_ink_order(image: np.ndarray, seed: int) -> np.ndarray:
    """The ink pixels (``image > 0``) in a random order from ``seed``, then the blank ones (deleting
    those changes nothing): the baseline a map's order must beat."""
    ink = image.ravel() > 0
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.permutation(np.flatnonzero(ink)), np.flatnonzero(~ink)])


def least_relevant_ink_order(relevance: np.ndarray, image: np.ndarray, seed: int) -> np.ndarray:
    """The ink pixels by *increasing* relevance (ties in a random order from ``seed``), then the blank ones."""
    ink = image.ravel() > 0
    pixels = np.random.default_rng(seed).permutation(np.flatnonzero(ink))
    ranked = pixels[np.argsort(relevance.ravel()[pixels], kind="stable")]
    return np.concatenate([ranked, np.flatnonzero(~ink)])


def deletion_images(image: np.ndarray, order: np.ndarray, steps: int = STEPS,
                    per_step: int = PIXELS_PER_STEP) -> np.ndarray:
    """``(steps + 1, *image.shape)``: ``image`` with the first ``k · per_step`` pixels of ``order`` set to 0."""
    flat = np.repeat(image.reshape(1, -1), steps + 1, axis=0)
    for k in range(1, steps + 1):
        flat[k, order[:k * per_step]] = 0.0
    return flat.reshape(steps + 1, *image.shape)


def insertion_images(image: np.ndarray, order: np.ndarray, steps: int = STEPS,
                     per_step: int = PIXELS_PER_STEP) -> np.ndarray:
    """``(steps + 1, *image.shape)``: a blank canvas with the first ``k · per_step`` pixels of ``order`` put back."""
    source = image.reshape(-1)
    flat = np.zeros((steps + 1, source.size), dtype=image.dtype)
    for k in range(1, steps + 1):
        kept = order[:k * per_step]
        flat[k, kept] = source[kept]
    return flat.reshape(steps + 1, *image.shape)


def deletion_aopc(curve: np.ndarray) -> float:
    """``1/(L+1) Σ_k (f(x⁰) − f(xᵏ))`` of a deletion curve ``f(x⁰), …, f(x^L)``."""
    return float(np.mean(curve[0] - curve))


def insertion_aopc(curve: np.ndarray) -> float:
    """``1/(L+1) Σ_k (f(xᵏ) − f(x⁰))`` of an insertion curve (``x⁰`` the blank canvas)."""
    return float(np.mean(curve - curve[0]))
