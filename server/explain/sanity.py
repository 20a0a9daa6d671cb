"""Live sanity checks of one map: model randomisation and deletion against a random order.

"Can I trust this map?", for the visitor's drawing, method, rule and selection:

- **model randomisation** (Adebayo et al. 2018, cascading): the same map from
  copies of the model whose ``fc2``, then ``fc2`` and ``fc1``, are
  re-initialised with fixed seeds (:func:`randomized_model`).  A map that
  explains the model must change when the model's weights are destroyed; one
  that keeps its ranking (:func:`~server.explain.faithfulness.rank_correlation`
  ≥ ``SIMILAR`` at any step of the cascade) mostly redraws the ink;
- **deletion**: the explained score (the class's logit; a neuron alone: its
  pre-activation) as the map's most relevant pixels are removed first, against
  a random order; the map passes if its AOPC is larger.

Everything is seeded from the drawing, so the same drawing gives the same report.
"""

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .faithfulness import deletion_aopc, deletion_images, random_order, rank_correlation, relevance_order

# Cascading randomisation, top layer first: which layers each copy re-initialises, as (label, layers).
RANDOMIZATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (("fc2", ("fc2",)), ("fc2+fc1", ("fc2", "fc1")))
LABELS = tuple(label for label, _ in RANDOMIZATIONS)
LAYER_SEEDS = {"fc1": 11, "fc2": 12}
# ρ at or above this, against either randomised copy, fails the randomisation check: the two maps
# then still agree more than weakly on which ink matters most.
SIMILAR = 0.5


def randomized_model(model: nn.Module, layers: tuple[str, ...]) -> nn.Module:
    """A deep copy of ``model`` with ``layers`` re-initialised as ``nn.Linear`` does, from fixed seeds.

    ``nn.Linear``'s default (Kaiming-uniform with ``a = √5``) draws weights and
    biases from ``U(−1/√fan_in, 1/√fan_in)``; each layer has its own seed, so
    ``fc1`` is the same in every copy that re-initialises it.
    """
    copied = copy.deepcopy(model)
    for name in layers:
        layer = getattr(copied, name)
        bound = 1.0 / math.sqrt(layer.in_features)
        generator = torch.Generator().manual_seed(LAYER_SEEDS[name])
        with torch.no_grad():
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    return copied


@dataclass(frozen=True)
class RandomizedMap:
    """The map from a copy with ``layers`` re-initialised (``"fc2"``, ``"fc2+fc1"``) and its ρ to the real one.

    ``counts``: whether the check reads this copy.  A CRP map or a neuron alone
    is ``R(j→c)`` (or ``z_j``) times neuron j's row of ``fc1``'s share matrix:
    re-initialising ``fc2`` changes only its strength, never its ranking (ρ = 1
    by construction), so for them only the copy with ``fc1`` re-initialised counts.
    """

    layers: str
    heatmap: np.ndarray
    rank_correlation: float
    counts: bool = True


@dataclass(frozen=True)
class Sanity:
    """The report of :func:`check`.

    ``deletion`` and ``random_deletion``: ``(STEPS + 1,)`` scores as pixels are
    removed in the map's order and in a random one; ``pixels_per_step`` pixels
    per step.  ``similar``: the ρ at which the randomisation check fails
    (:data:`SIMILAR`).  ``verdict``: one sentence for the visitor.  ``empty``: the map
    is all zeros, and nothing was checked.
    """

    randomized: tuple[RandomizedMap, ...]
    deletion: np.ndarray
    random_deletion: np.ndarray
    deletion_aopc: float
    random_deletion_aopc: float
    pixels_per_step: int
    similar: float
    passes_randomization: bool
    passes_deletion: bool
    empty: bool
    verdict: str


def check(image: np.ndarray, heatmap: np.ndarray, randomized: dict[str, np.ndarray],
          score: Callable[[np.ndarray], np.ndarray], seed: int, per_step: int,
          counted: tuple[str, ...] = LABELS) -> Sanity:
    """The sanity report of ``heatmap`` for ``image`` (both ``(28, 28)``).

    Parameters
    ----------
    randomized:
        The same map from each randomised copy, by label of :data:`RANDOMIZATIONS`.
    score:
        ``(N, 28, 28)`` images → ``(N,)`` the explained score of each (float64).
    seed:
        Seeds the tie order and the random deletion order.
    per_step:
        Pixels removed per deletion step.
    counted:
        The labels of the copies the randomisation check reads (see :class:`RandomizedMap`).
    """
    ink = image > 0
    maps = tuple(RandomizedMap(label, randomized[label], rank_correlation(heatmap, randomized[label], ink),
                               label in counted) for label, _ in RANDOMIZATIONS)
    curves = score(np.concatenate([
        deletion_images(image, relevance_order(heatmap, seed), per_step=per_step),
        deletion_images(image, random_order(image.size, seed + 1), per_step=per_step)]))
    deletion, random_deletion = np.split(np.asarray(curves, dtype=np.float64), 2)
    empty = not heatmap.any()
    similarity = max(randomized_map.rank_correlation for randomized_map in maps if randomized_map.counts)
    passes_randomization = not empty and similarity < SIMILAR
    passes_deletion = not empty and deletion_aopc(deletion) > deletion_aopc(random_deletion)
    return Sanity(maps, deletion, random_deletion, deletion_aopc(deletion), deletion_aopc(random_deletion),
                  per_step, SIMILAR, passes_randomization, passes_deletion, empty,
                  verdict(empty, passes_randomization, passes_deletion, similarity))


def verdict(empty: bool, randomization: bool, deletion: bool, correlation: float) -> str:
    """One plain sentence on the two checks."""
    if empty:
        return "This map is empty: there is nothing to check."
    if randomization and deletion:
        return ("Passes both checks: the map changes when the model's weights are destroyed, and removing "
                "its most relevant pixels first lowers the score faster than removing random ones.")
    if deletion:
        return (f"Careful: the map stays similar (ρ = {correlation:.2f}) when the model's weights are destroyed, "
                "so it partly shows the drawing rather than what the model learned.")
    if randomization:
        return ("Careful: removing this map's most relevant pixels first lowers the score no faster than "
                "removing random ones.")
    return ("Fails both checks: the map survives destroying the model's weights, and its most relevant "
            "pixels are no better than random ones.")
