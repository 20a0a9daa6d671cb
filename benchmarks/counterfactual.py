"""Counterfactual benchmark: success, size of the change, time and plausibility over official test digits.

``python -m benchmarks.counterfactual [--json] [--n 500] [--model default]``
reads the first ``n`` digits of the official MNIST test set (``MNIST_DIR``)
and asks :class:`server.explain.counterfactual.CounterfactualSearch` of
``--model`` for a counterfactual of each digit towards every class other
than the one the model predicts (9 per digit), in one run and one thread.
It reports:

- success rate: the share of searches that returned an image the model reads
  as the target with ``p ≥ 0.9`` (the search's threshold, re-checked here on
  the returned bytes);
- the change: median L1 ``Σ|x′ − x|`` (pixels in [0, 1]) and median
  ``changed_ink``;
- time: median and 90th percentile milliseconds per search;
- plausibility, a measure the search does not optimise: the share of
  successful counterfactuals that the *other* shipped model (``--other``,
  trained separately) also reads as the target.  An adversarial change fitted
  to one network rarely carries over to another, while a drawing that looks
  like a c′ is read as one by both.  Its ceiling: the same share for the
  search's nearest prototype, a real training digit of the target.

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
from tqdm import tqdm

from model_store import load_model
from model_store.datasets import load_embedded, load_idx, mnist_dir_from_env
from server.explain.counterfactual import CounterfactualSearch

SUCCESS_PROBABILITY = 0.9
SUCCESS_GOAL = 0.95
MEDIAN_GOAL_MS = 300.0


def reads(search: CounterfactualSearch, images: np.ndarray) -> np.ndarray:
    """The class ``search``'s model reads for each of ``images (N, 784)``."""
    network = search.network()
    _, a = network.hidden(images.astype(np.float32))
    return network.probabilities(a).argmax(axis=1)


def run(n: int, model: str, other: str) -> dict[str, object]:
    directory = mnist_dir_from_env()
    if directory is None:
        sys.exit("MNIST_DIR is not set: the benchmark runs on the official test digits")
    torch.set_num_threads(1)
    digits = load_idx(directory, "test")[0][:n]
    training, labels = load_embedded()
    search = CounterfactualSearch(load_model(model), training, labels)
    judge = CounterfactualSearch(load_model(other), training, labels)
    times, changes, inks, found, targets, prototypes = [], [], [], [], [], []
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
            found.append(answer.image.reshape(-1))
            targets.append(target)
            prototypes.append(search.prototypes(search.network(), image.reshape(1, -1), target)[0][0])
    found_images, target_array, prototype_images = np.array(found), np.array(targets), np.array(prototypes)
    total = len(times)
    return {
        "model": model, "other_model": other, "digits": n, "searches": total,
        "success_rate": (total - failures) / total,
        "median_l1_change": float(np.median(changes)), "median_changed_ink": float(np.median(inks)),
        "median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
        "plausibility": {
            "other_model_reads_target": float((reads(judge, found_images) == target_array).mean()),
            "ceiling_other_model_on_prototype": float((reads(judge, prototype_images) == target_array).mean()),
        },
        "goals": {"success_rate": SUCCESS_GOAL, "median_ms": MEDIAN_GOAL_MS},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--n", type=int, default=500, help="official test digits (first n), default 500")
    parser.add_argument("--model", default="default", help="the model searched, default 'default'")
    parser.add_argument("--other", default="h16", help="the model that judges plausibility, default 'h16'")
    arguments = parser.parse_args()
    result = run(arguments.n, arguments.model, arguments.other)
    if arguments.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
