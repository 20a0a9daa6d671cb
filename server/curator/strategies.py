"""Query strategies: which pool drawings a curator should label next.  Pure: arrays in, indices out.

Uncertainty sampling (Settles 2009, "Active Learning Literature Survey", §3.1):
least confidence ``1 − max p``, margin ``p₁ − p₂`` (smallest first), entropy
``−Σ p log p``.  Cluster-based, in an embedding (the hidden layer's
activations), following alre: k-means with ``n`` clusters, then per cluster
the drawing closest to its centroid (k-means-closest, a representative) or
the least confident one (k-means-uncertain).  Ranked batch mode as modAL
defines it (Cardoso et al. 2017, "Ranked batch-mode active learning"): pick
one at a time the drawing maximising ``α (1 − sim) + (1 − α) u``, where
``sim = 1 / (1 + d)`` with ``d`` the distance to the nearest labelled (or
already picked) drawing, ``u`` the least-confidence uncertainty and
``α = |unlabelled| / (|unlabelled| + |labelled|)``; with nothing labelled it
starts from the drawing of least mean distance to the others (modAL's cold start).
"""

from collections.abc import Callable

import numpy as np
from sklearn.cluster import KMeans

SEED = 0  # k-means initialisation: the same pool gives the same proposal


def least_confidence(probabilities: np.ndarray) -> np.ndarray:
    """``(N, 10)`` probabilities → ``(N,)`` ``1 − max p`` in [0, 0.9]; higher is less sure."""
    return np.asarray(1.0 - probabilities.max(axis=1))


def margin(probabilities: np.ndarray) -> np.ndarray:
    """``(N,)`` ``p₁ − p₂`` of the two most probable classes in [0, 1]; lower is less sure."""
    top = np.sort(probabilities, axis=1)
    return np.asarray(top[:, -1] - top[:, -2])


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """``(N,)`` ``−Σ p ln p`` in [0, ln 10]; higher is less sure."""
    clipped = np.clip(probabilities, 1e-12, 1.0)
    return np.asarray(-(clipped * np.log(clipped)).sum(axis=1))


def _top(scores: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` highest ``scores``, highest first; ties by index (stable)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:n]]


def _clusters(embedding: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """k-means with ``min(n, N)`` clusters: labels ``(N,)`` and each drawing's distance to its centroid."""
    kmeans = KMeans(n_clusters=min(n, len(embedding)), n_init=4, random_state=SEED).fit(embedding)
    distance = np.linalg.norm(embedding - kmeans.cluster_centers_[kmeans.labels_], axis=1)
    return kmeans.labels_, distance


def _per_cluster(labels: np.ndarray, score: np.ndarray) -> list[int]:
    """Per cluster, the member of highest ``score``; the picks ordered by that score, highest first."""
    picks = [int(np.flatnonzero(labels == c)[np.argmax(score[labels == c])]) for c in np.unique(labels)]
    return sorted(picks, key=lambda i: -score[i])


def kmeans_closest(probabilities: np.ndarray, embedding: np.ndarray, labelled: np.ndarray, n: int) -> list[int]:
    """Per k-means cluster, the drawing nearest its centroid: ``n`` representatives of the pool."""
    labels, distance = _clusters(embedding, n)
    return _per_cluster(labels, -distance)


def kmeans_uncertain(probabilities: np.ndarray, embedding: np.ndarray, labelled: np.ndarray, n: int) -> list[int]:
    """Per k-means cluster, the least confident drawing: uncertain, and spread over the pool."""
    labels, _ = _clusters(embedding, n)
    return _per_cluster(labels, least_confidence(probabilities))


def ranked_batch(probabilities: np.ndarray, embedding: np.ndarray, labelled: np.ndarray, n: int) -> list[int]:
    """modAL's ranked batch: ``labelled`` ``(L, D)`` embeddings of drawings already labelled (``L`` may be 0)."""
    uncertainty = least_confidence(probabilities)
    pool = len(embedding)
    chosen: list[int] = []
    available = np.ones(pool, dtype=bool)
    if len(labelled):
        nearest = np.min(np.linalg.norm(embedding[:, None, :] - labelled[None, :, :], axis=2), axis=1)
    else:  # cold start: the most central drawing
        mean_distance = np.linalg.norm(embedding[:, None, :] - embedding[None, :, :], axis=2).mean(axis=1)
        first = int(np.argmin(mean_distance))
        chosen.append(first)
        available[first] = False
        nearest = np.linalg.norm(embedding - embedding[first], axis=1)
    labelled_count = len(labelled) + len(chosen)
    while len(chosen) < min(n, pool):
        alpha = available.sum() / (available.sum() + labelled_count)
        scores = alpha * (1.0 - 1.0 / (1.0 + nearest)) + (1.0 - alpha) * uncertainty
        scores[~available] = -np.inf
        best = int(np.argmax(scores))
        chosen.append(best)
        available[best] = False
        labelled_count += 1
        nearest = np.minimum(nearest, np.linalg.norm(embedding - embedding[best], axis=1))
    return chosen


Strategy = Callable[[np.ndarray, np.ndarray, np.ndarray, int], list[int]]

STRATEGIES: dict[str, Strategy] = {
    "least_confidence": lambda p, e, lab, n: _top(least_confidence(p), n),
    "margin": lambda p, e, lab, n: _top(-margin(p), n),
    "entropy": lambda p, e, lab, n: _top(entropy(p), n),
    "kmeans_closest": kmeans_closest,
    "kmeans_uncertain": kmeans_uncertain,
    "ranked_batch": ranked_batch,
}


def propose(strategy: str, probabilities: np.ndarray, embedding: np.ndarray, labelled: np.ndarray,
            n: int) -> list[int]:
    """Indices of the ``n`` pool drawings ``strategy`` proposes, in its order; ``[]`` for an empty pool.

    ``probabilities`` ``(N, 10)``, ``embedding`` ``(N, D)``, ``labelled`` ``(L, D)`` float arrays.
    Raises ``KeyError`` for an unknown strategy name.
    """
    if not len(probabilities) or n <= 0:
        return []
    return STRATEGIES[strategy](probabilities, embedding, labelled, n)


def project_2d(embedding: np.ndarray) -> np.ndarray:
    """``(N, D)`` → ``(N, 2)``: the first two principal components, each scaled into [−1, 1] (zeros if flat)."""
    if len(embedding) < 2:
        return np.zeros((len(embedding), 2))
    centred = embedding - embedding.mean(axis=0)
    _, _, basis = np.linalg.svd(centred, full_matrices=False)
    points = centred @ basis[:2].T
    if points.shape[1] < 2:
        points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    scale = np.abs(points).max(axis=0)
    return np.asarray(points / np.where(scale > 0, scale, 1.0))
