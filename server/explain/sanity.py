"""Live sanity checks of one map, judged against references measured on the same drawing.

"Can I trust this map?", for the visitor's drawing, method, rule and selection.
This module holds the one definition of both checks; the live card
(:meth:`server.explain.engine.Engine.sanity`) and ``benchmarks.faithfulness``
both call :func:`check`.

- **Model randomisation** (Adebayo et al. 2018, cascading): the same map from
  ``COPIES`` independent copies of the model whose ``fc2``, then ``fc2`` and
  ``fc1``, are re-initialised (:func:`randomized_model`, fixed seeds).  ρ
  (:func:`~server.explain.faithfulness.rank_correlation`) of the real map
  against each copy's map is compared with the *random-pair band*: the ρ
  between the copies' maps themselves, i.e. how much two unrelated networks'
  maps share on this drawing just because they read the same ink.  A map that
  shows the model is as different from a randomised copy's map as two such
  copies are from each other: it passes a step when the median real-vs-copy ρ
  lies no further above the pairs' median than the band's width (highest −
  lowest pair ρ), the spread two unrelated networks show on this drawing.  (The
  top of the band alone would fail ε on ~12 % of drawings where the real map is
  just one more network: its median of 4 against the highest of 6 pairs.)  A map that is the same whatever the
  weights (the copies' maps rank the ink alike, median pair ρ ≥
  ``SAME_RANKING``) shows the drawing, not the model: it fails, whatever its ρ.
  A copy whose map is empty or constant on the ink (a CRP neuron silent in the
  re-initialised ``fc1``) has no ρ: it is left out, never counted as 0; with
  fewer than two copies left the step is *not applicable*.
- **Deletion**: the explained score (the class's logit; a neuron alone: its
  pre-activation) as the map's most relevant pixels are removed first, against
  ``RANDOM_ORDERS`` random orders over the *ink* pixels and against the map's
  least relevant ink first (pixel flipping with both orders; ROAD).  The map
  passes when its AOPC beats every random ink order and the least-relevant-first order.

Everything is seeded from the drawing, so the same drawing gives the same report.
"""

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch
from torch import nn

from .faithfulness import (
    deletion_aopc,
    deletion_images,
    insertion_aopc,
    insertion_images,
    least_relevant_ink_order,
    random_ink_order,
    rank_correlation,
    relevance_order,
)

# Cascading randomisation, top layer first: which layers each copy re-initialises, as (label, layers).
RANDOMIZATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (("fc2", ("fc2",)), ("fc2+fc1", ("fc2", "fc1")))
# A cnn's cascade: its top layer, then every layer (a conv channel's map takes its shape from the conv layers,
# which re-initialising the dense layers alone leaves as they were).
CNN_RANDOMIZATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (("fc2", ("fc2",)),
                                                               ("all", ("fc2", "fc1", "conv2", "conv1")))
# Independent re-initialisations per step: 4 copies give 4 real-vs-copy ρ and 6 pairs for the band.
COPIES = 4
LAYER_SEEDS = {"fc1": 11, "fc2": 12, "conv1": 13, "conv2": 14}
SEED_STRIDE = 1000  # copy k seeds each layer with LAYER_SEEDS[layer] + k · SEED_STRIDE
# Two maps whose ink rankings correlate this much rank it alike (Spearman ρ; identical maps give 1).
# When even unrelated random networks' maps agree this much, the method draws the drawing.
SAME_RANKING = 0.9
RANDOM_ORDERS = 8  # random ink orders: the map must beat all of them (by chance, 1 map in 9 would)


def randomized_model(model: nn.Module, layers: tuple[str, ...], copy_index: int = 0) -> nn.Module:
    """A deep copy of ``model`` with ``layers`` re-initialised as ``nn.Linear`` and ``nn.Conv2d`` do, from fixed seeds.

    Their default (Kaiming-uniform with ``a = √5``) draws weights and biases from
    ``U(−1/√fan_in, 1/√fan_in)`` (a convolution's fan-in: input channels × kernel area); each layer of
    copy ``copy_index`` has its own seed, so ``fc1`` is the same in every step of one copy's cascade.
    """
    copied = copy.deepcopy(model)
    for name in layers:
        layer = copied.get_submodule(name)
        if not isinstance(layer, (nn.Linear, nn.Conv2d)) or layer.bias is None:
            raise TypeError(f"{name} must be a Linear or Conv2d layer with a bias, got {type(layer).__name__}")
        bound = 1.0 / math.sqrt(layer.weight[0].numel())
        generator = torch.Generator().manual_seed(LAYER_SEEDS[name] + SEED_STRIDE * copy_index)
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return copied


@dataclass(frozen=True)
class RandomizedMap:
    """One randomisation step (``layers``: ``"fc2"``, ``"fc2+fc1"``) judged against its random-pair band.

    ``heatmap``: the first copy's map (the one shown).  ``correlations``: ρ of
    the real map against each copy's map, ``None`` where undefined.
    ``rank_correlation``: their median (``None``: not applicable).  ``band``:
    (lowest, median, highest) ρ between the copies' maps, ``None`` with fewer
    than two copies defined.  ``passes``: ``None`` when not applicable.
    ``counts``: whether the card reads this step.  A CRP map or a neuron alone
    is ``R(j→c)`` (or ``z_j``) times neuron j's row of ``fc1``'s share matrix:
    re-initialising ``fc2`` changes only its strength, never its ranking (ρ = 1
    by construction), so for them only the step with ``fc1`` counts.
    """

    layers: str
    heatmap: np.ndarray
    correlations: tuple[float | None, ...]
    rank_correlation: float | None
    band: tuple[float, float, float] | None
    passes: bool | None
    counts: bool = True


@dataclass(frozen=True)
class Deletion:
    """Deletion curves ``(STEPS + 1,)`` of the explained score and their AOPC.

    ``curve``: the map's order; ``least``: least relevant ink first;
    ``random``: ``(RANDOM_ORDERS, STEPS + 1)`` random ink orders.
    ``random_band``: (lowest, median, highest) random AOPC.
    ``insertion``: the mirror image, ``(STEPS + 1,)``: a blank canvas with the map's most relevant
    pixels put back first, and ``insertion_aopc`` its mean rise above the blank canvas's score.
    Shown beside the deletion curve; it decides no check.
    """

    curve: np.ndarray
    least: np.ndarray
    random: np.ndarray
    aopc: float
    least_aopc: float
    random_aopcs: tuple[float, ...]
    pixels_per_step: int
    passes: bool
    insertion: np.ndarray
    insertion_aopc: float

    @property
    def random_band(self) -> tuple[float, float, float]:
        values = np.asarray(self.random_aopcs)
        return float(values.min()), float(np.median(values)), float(values.max())


@dataclass(frozen=True)
class Sanity:
    """The report of :func:`check`.

    ``passes_randomization``: every counted, applicable step passes; ``None``
    when none is applicable.  ``empty``: the map is all zeros, nothing was
    checked (both checks ``False``).  ``verdict``: one sentence for the visitor.
    ``same_ranking``: :data:`SAME_RANKING`, for the message.
    """

    randomized: tuple[RandomizedMap, ...]
    deletion: Deletion
    passes_randomization: bool | None
    passes_deletion: bool
    empty: bool
    verdict: str
    same_ranking: float = SAME_RANKING

    @property
    def passes(self) -> bool:
        """Both checks pass (a not-applicable randomisation does not)."""
        return bool(self.passes_randomization) and self.passes_deletion


def judge_randomization(layers: str, real: np.ndarray, copies: Sequence[np.ndarray], ink: np.ndarray,
                        counts: bool) -> RandomizedMap:
    """One randomisation step of ``real`` against the maps of independent ``copies`` (module docstring)."""
    correlations = tuple(rank_correlation(real, other, ink) for other in copies)
    defined = [k for k, rho in enumerate(correlations) if rho is not None]
    pairs = [rank_correlation(copies[a], copies[b], ink) for a, b in combinations(defined, 2)]
    band_values = [rho for rho in pairs if rho is not None]
    if len(defined) < 2 or not band_values:
        return RandomizedMap(layers, copies[0], correlations, None, None, None, counts)
    median = float(np.median([correlations[k] for k in defined]))
    band = (float(min(band_values)), float(np.median(band_values)), float(max(band_values)))
    passes = median <= band[1] + (band[2] - band[0]) and band[1] < SAME_RANKING
    return RandomizedMap(layers, copies[0], correlations, median, band, passes, counts)


def judge_deletion(image: np.ndarray, heatmap: np.ndarray, score: Callable[[np.ndarray], np.ndarray],
                   seed: int, per_step: int) -> Deletion:
    """The deletion check of ``heatmap`` on ``image`` (module docstring); ``score`` as in :func:`check`."""
    orders = [relevance_order(heatmap, seed), least_relevant_ink_order(heatmap, image, seed)]
    orders += [random_ink_order(image, seed + 1 + k) for k in range(RANDOM_ORDERS)]
    # One batch: every deletion order, then the map's order inserted into a blank canvas.
    images = [deletion_images(image, order, per_step=per_step) for order in orders]
    images.append(insertion_images(image, orders[0], per_step=per_step))
    curves = np.asarray(score(np.concatenate(images)), dtype=np.float64).reshape(len(images), -1)
    inserted, curves = curves[-1], curves[:-1]
    aopcs = [deletion_aopc(curve) for curve in curves]
    passes = bool(aopcs[0] > aopcs[1] and aopcs[0] > max(aopcs[2:]))
    return Deletion(curves[0], curves[1], curves[2:], aopcs[0], aopcs[1], tuple(aopcs[2:]), per_step, passes,
                    inserted, insertion_aopc(inserted))


def check(image: np.ndarray, heatmap: np.ndarray, randomized: Mapping[str, Sequence[np.ndarray]],
          score: Callable[[np.ndarray], np.ndarray], seed: int, per_step: int,
          counted: tuple[str, ...] | None = None) -> Sanity:
    """The sanity report of ``heatmap`` for ``image`` (both ``(28, 28)``).

    Parameters
    ----------
    randomized:
        The same map from each of the ``COPIES`` randomised copies, by label of the model's cascade
        (:data:`RANDOMIZATIONS`, :data:`CNN_RANDOMIZATIONS`), top layer first.
    score:
        ``(N, 28, 28)`` images → ``(N,)`` the explained score of each (float64).
    seed:
        Seeds the tie order and the random deletion orders.
    per_step:
        Pixels removed per deletion step.
    counted:
        The labels of the steps the randomisation check reads (see :class:`RandomizedMap`); ``None``: all.
    """
    ink = image > 0
    steps = tuple(judge_randomization(label, heatmap, maps, ink, counted is None or label in counted)
                  for label, maps in randomized.items())
    deletion = judge_deletion(image, heatmap, score, seed, per_step)
    empty = not heatmap.any()
    judged = [step.passes for step in steps if step.counts and step.passes is not None]
    passes_randomization = None if not judged else (not empty and all(judged))
    passes_deletion = not empty and deletion.passes
    return Sanity(steps, deletion, passes_randomization, passes_deletion, empty,
                  verdict(empty, passes_randomization, passes_deletion, steps))


def verdict(empty: bool, randomization: bool | None, deletion: bool, steps: Sequence[RandomizedMap]) -> str:
    """One plain sentence on the two checks."""
    if empty:
        return "This map is empty: there is nothing to check."
    deletion_words = ("removing its most relevant pixels first lowers the score faster than random ink or its "
                      "least relevant ink" if deletion else
                      "removing its most relevant pixels first lowers the score no faster than random ink or its "
                      "least relevant ink")
    judged = [(not step.passes, step.rank_correlation, step.band) for step in steps
              if step.counts and step.rank_correlation is not None and step.band is not None]
    if randomization is None or not judged:
        return ("The model check does not apply: the randomised networks give this map nothing to compare. "
                f"{'Deletion passes' if deletion else 'Careful'}: {deletion_words}.")
    _, rho, band = max(judged, key=lambda item: (item[0], item[1]))  # a failing step first, then the highest ρ
    similar = f"ρ = {rho:.2f}, while random networks' maps agree with each other at {band[0]:.2f}–{band[2]:.2f}"
    if randomization and deletion:
        return (f"Passes both checks: the map changes with the model's weights as much as two random networks' "
                f"maps differ ({similar}), and {deletion_words}.")
    if randomization:
        return f"Careful: the map changes with the model's weights ({similar}), but {deletion_words}."
    model_words = (f"the map is the same whatever the weights ({similar}): it shows the drawing, not the model"
                   if band[1] >= SAME_RANKING else f"the map survives destroying the model's weights ({similar})")
    if deletion:
        return f"Careful: {model_words}."
    return f"Fails both checks: {model_words}, and {deletion_words}."
