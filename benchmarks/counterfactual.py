"""Counterfactual benchmark: success, size of the change, time and plausibility over official test digits.

``python -m benchmarks.counterfactual [--json] [--n 500] [--model default]``
reads the first ``n`` digits of the *report* half of the official MNIST test
set (``MNIST_DIR``; digits 5,000–9,999, :mod:`benchmarks.splits`)
and asks :class:`server.explain.counterfactual.CounterfactualSearch` of
``--model`` for a counterfactual of each digit towards every class other
than the one the model predicts (9 per digit), in one run and one thread.
It reports:

- success rate: the share of searches that returned an image the model reads
  as the target with ``p ≥ 0.9`` (the search's threshold, re-checked here on
  the returned bytes);
- the change: median L1 ``Σ|x′ − x|`` (pixels in [0, 1]) and median
  ``changed_ink``;
- time: median and 90th percentile milliseconds per search (one BLAS thread);
- the share of answers the search's own k-NN prior accepts (``plausible``);
- plausibility by an **independent judge**: the share of successful
  counterfactuals that a 5-nearest-neighbour classifier (Euclidean, on the
  28 × 28 pixels) over the *selection* half of the official test set (digits
  0–4,999 and their labels) reads as the target.  It shares nothing with the
  explained model or its training digits, and the digits it remembers are
  never the ones explained.  Its ceiling: the same share for the unchanged
  test digits read as their own label;
- plausibility by a second judge, another shipped model (``--other``, default
  ``cnn``: another architecture, trained separately; the search never
  consults it): the share of successful counterfactuals it also reads as the
  target.  An adversarial change fitted to one network rarely carries over to
  another, while a drawing that looks like a c′ is read as one by both.  It is
  less independent than the 5-NN: it learnt from the same 4,500 embedded
  digits the search's prototypes come from.  Its ceiling: the same share for
  the search's nearest prototype, a real training digit of the target.

The search's prototypes come from the 5,000 embedded training digits; the
official test digits are only explained, never searched.
"""

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from model_store import load_model
from model_store.datasets import load_embedded, load_idx, mnist_dir_from_env
from server.explain.counterfactual import CounterfactualSearch

from .splits import REPORT, SELECTION

NEIGHBOURS = 5
SUCCESS_PROBABILITY = 0.9
SUCCESS_GOAL = 0.95
MEDIAN_GOAL_MS = 300.0


def reads(search: CounterfactualSearch, images: np.ndarray) -> np.ndarray:
    """The class ``search``'s model reads for each of ``images (N, 784)``."""
    network = search.network()
    _, a = network.hidden(images.astype(np.float32))
    return network.probabilities(a).argmax(axis=1)


def nearest_neighbour_reads(memory: np.ndarray, labels: np.ndarray, images: np.ndarray,
                            k: int = NEIGHBOURS) -> np.ndarray:
    """The majority label of each image's ``k`` nearest ``memory`` digits (Euclidean; ties: the nearest's).

    ``memory (M, 784)``, ``labels (M,)``, ``images (N, 784)`` float in [0, 1].
    """
    reads = np.empty(len(images), dtype=np.int64)
    squared = (memory.astype(np.float64) ** 2).sum(axis=1)
    for start in range(0, len(images), 256):
        batch = images[start:start + 256].astype(np.float64)
        distances = squared[None, :] - 2.0 * batch @ memory.T.astype(np.float64)
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
        for row, neighbours in enumerate(nearest):
            votes = np.bincount(labels[neighbours], minlength=10)
            winners = np.flatnonzero(votes == votes.max())
            reads[start + row] = next(labels[j] for j in neighbours if labels[j] in winners)
    return reads


def run(n: int, model: str, other: str) -> dict[str, object]:
    directory = mnist_dir_from_env()
    if directory is None:
        sys.exit("MNIST_DIR is not set: the benchmark runs on the official test digits")
    torch.set_num_threads(1)
    test_images, test_labels = load_idx(directory, "test")
    digits, digit_labels = test_images[REPORT][:n], test_labels[REPORT][:n]
    memory, memory_labels = test_images[SELECTION].reshape(-1, 784), test_labels[SELECTION]
    training, labels = load_embedded()
    search = CounterfactualSearch(load_model(model), training, labels)
    judge = CounterfactualSearch(load_model(other), training, labels)
    times, changes, inks, found, targets, prototypes, plausible = [], [], [], [], [], [], []
    failures = 0
    predictions = reads(search, digits.reshape(n, -1))
    for image, prediction in tqdm(list(zip(digits, predictions)), desc="digits", disable=None):
        for target in range(10):
            if target == prediction:
                continue
            started = time.perf_counter()
            answer = search.find(image, target)
            times.append((time.perf_counter() - started) * 1000.0)
            if answer is None or reads(search, answer.image.reshape(1, -1))[0] != target \
                    or answer.probability < SUCCESS_PROBABILITY:
                failures += 1
                continue
            changes.append(float(np.abs(answer.image - image).sum()))
            inks.append(answer.changed_ink)
            plausible.append(answer.plausible)
            found.append(answer.image.reshape(-1))
            targets.append(target)
            prototypes.append(search.prototypes(search.network(), image.reshape(1, -1), target)[0])
    found_images, target_array, prototype_images = np.array(found), np.array(targets), np.array(prototypes)
    total = len(times)
    return {
        "model": model, "other_model": other, "digits": n, "searches": total,
        "success_rate": (total - failures) / total,
        "median_l1_change": float(np.median(changes)), "median_changed_ink": float(np.median(inks)),
        "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
        "plausible_by_the_search_prior": float(np.mean(plausible)),
        "plausibility": {
            "second_judge": other,
            "judge": f"{NEIGHBOURS}-NN over official test digits {SELECTION.start}–{SELECTION.stop - 1}; "
                     f"explained: {REPORT.start}–{REPORT.start + n - 1}",
            "judge_reads_target": float(
                (nearest_neighbour_reads(memory, memory_labels, found_images) == target_array).mean()),
            "judge_ceiling_on_the_digits_themselves": float(
                (nearest_neighbour_reads(memory, memory_labels, digits.reshape(n, -1)) == digit_labels).mean()),
            "other_model_reads_target": float((reads(judge, found_images) == target_array).mean()),
            "ceiling_other_model_on_prototype": float((reads(judge, prototype_images) == target_array).mean()),
        },
        "goals": {"success_rate": SUCCESS_GOAL, "median_ms": MEDIAN_GOAL_MS, "judge_reads_target": 0.9,
                  "median_l1_change": 45.6},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--n", type=int, default=500, help="official test digits (first n), default 500")
    parser.add_argument("--model", default="default", help="the model searched, default 'default'")
    parser.add_argument("--other", default="cnn", help="the model that judges plausibility, default 'cnn'")
    arguments = parser.parse_args()
    with threadpool_limits(limits=1):  # one BLAS thread, as in the server (server/__init__.py): numpy loaded first
        result = run(arguments.n, arguments.model, arguments.other)
    if arguments.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
