"""The counterfactual benchmark's independent judge: a 5-NN over digits it never explains."""

import numpy as np

from benchmarks.counterfactual import nearest_neighbour_reads
from benchmarks.splits import REPORT, SELECTION


def test_the_judge_reads_the_majority_of_the_five_nearest_digits() -> None:
    rng = np.random.default_rng(0)
    centres = rng.random((10, 784))
    memory = np.repeat(centres, 7, axis=0) + rng.normal(0, 0.01, (70, 784))
    labels = np.repeat(np.arange(10), 7)
    queries = centres + rng.normal(0, 0.01, (10, 784))
    assert nearest_neighbour_reads(memory, labels, queries).tolist() == list(range(10))
    # Three of the five nearest are 3s: a majority beats the single nearest 8.
    memory = np.stack([np.full(784, value) for value in (0.10, 0.20, 0.21, 0.22, 0.30, 0.9)])
    labels = np.array([8, 3, 3, 3, 8, 1])
    assert nearest_neighbour_reads(memory, labels, np.full((1, 784), 0.1)).tolist() == [3]


def test_the_judge_never_remembers_a_digit_it_is_asked_about() -> None:
    assert SELECTION.stop <= REPORT.start
