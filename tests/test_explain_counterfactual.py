"""Counterfactuals: read as the target on the golden digits and by an independent judge, plausible by the
k-NN prior, ink removed as well as added, within [0, 1], deterministic, knock-out aware."""


import time

import numpy as np
import pytest
import torch

from benchmarks.counterfactual import nearest_neighbour_reads
from model_store import load_model
from model_store.datasets import load_embedded, load_idx, mnist_dir_from_env
from model_store.strokes import load_golden_digits
from server.explain.counterfactual import CounterfactualSearch, Objective, Paths, quantise
from server.raster import rasterize


@pytest.fixture(scope="module")
def training():
    return load_embedded()


@pytest.fixture(scope="module")
def golden() -> list[np.ndarray]:
    return [rasterize(strokes) for strokes in load_golden_digits().values()]


def neighbours_of(training, image: np.ndarray, target: int, k: int = 20) -> int:
    """How many of the ``k`` embedded digits nearest to ``image`` in 2 × 2-pooled pixels are ``target``s,
    computed here by sorting every distance (the search partitions them)."""
    images, labels = training
    pooled = images.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(images), -1)
    query = image.reshape(14, 2, 14, 2).mean(axis=(1, 3)).reshape(-1)
    nearest = np.argsort(((pooled - query) ** 2).sum(axis=1), kind="stable")[:k]
    return int((labels[nearest] == target).sum())


def model_reads(model: torch.nn.Module, image: np.ndarray, knockout: tuple[int, ...] = ()) -> np.ndarray:
    """The model's probabilities for ``image``, computed by torch (not by the search's numpy copy)."""
    with torch.no_grad():
        hidden = torch.relu(model.fc1(torch.from_numpy(image).reshape(1, -1)))
        hidden[:, list(knockout)] = 0.0
        return torch.softmax(model.fc2(hidden), dim=1)[0].numpy()


@pytest.mark.parametrize("name", ["default", "h16"])
def test_every_golden_digit_becomes_every_other_class(name, training, golden):
    model = load_model(name)
    search = CounterfactualSearch(model, *training)
    plausible = searches = 0
    for image in golden:
        prediction = int(model_reads(model, image).argmax())
        for target in range(10):
            if target == prediction:
                continue
            answer = search.find(image, target)
            assert answer is not None, (prediction, target)
            probabilities = model_reads(model, answer.image)
            assert probabilities.argmax() == target and probabilities[target] >= 0.9
            assert answer.probability == pytest.approx(float(probabilities[target]), abs=1e-5)
            assert answer.image.shape == (28, 28) and answer.image.dtype == np.float32
            assert answer.image.min() >= 0.0 and answer.image.max() <= 1.0
            assert np.array_equal(np.rint(answer.image * 255.0) / np.float32(255.0), answer.image)  # as sent
            assert 0.0 < answer.changed_ink <= 1.0
            assert answer.agreeing == neighbours_of(training, answer.image, target)
            assert answer.plausible == (answer.agreeing >= search.objective.agree)
            plausible += answer.plausible
            searches += 1
    assert plausible >= 0.95 * searches  # the k-NN prior is met, bar a few fallbacks


def test_the_same_drawing_gives_the_same_counterfactual(training, golden):
    search = CounterfactualSearch(load_model("default"), *training)
    first, second = search.find(golden[3], 8), search.find(golden[3].copy(), 8)
    assert np.array_equal(first.image, second.image)
    assert (first.probability, first.changed_ink, first.steps) == (second.probability, second.changed_ink,
                                                                    second.steps)


def test_a_knocked_out_model_reads_its_counterfactual_as_the_target(training, golden):
    model = load_model("h16")
    search = CounterfactualSearch(model, *training)
    knockout = (0, 3, 7)
    answer = search.find(golden[1], 7, knockout)
    assert model_reads(model, answer.image, knockout)[7] >= 0.9


def test_a_search_no_image_satisfies_answers_the_model_read_image_with_most_agreeing_neighbours(training, golden):
    """A prior no image can satisfy (21 of 20 neighbours): every path runs to its prototype, and the answer
    is an image the model reads as the target, flagged as not plausible."""
    model = load_model("default")
    search = CounterfactualSearch(model, *training, Objective(agree=21))
    answer = search.find(golden[1], 0)
    assert model_reads(model, answer.image)[0] >= 0.9
    assert not answer.plausible and answer.steps == search.objective.steps


def test_no_training_digit_read_as_the_target_means_no_counterfactual(training, golden):
    """With every hidden unit knocked out the model reads nothing with p ≥ 0.9: no prototype, no answer."""
    search = CounterfactualSearch(load_model("h16"), *training)
    assert search.find(golden[1], 0, tuple(range(16))) is None


def test_a_search_keeps_the_digits_it_was_given_without_copying_them(training):
    images, labels = training
    searches = [CounterfactualSearch(load_model(name), images, labels) for name in ("default", "h16")]
    assert all(np.shares_memory(search.images, images) for search in searches)


def test_a_counterfactual_is_bit_identical_when_the_search_is_20_times_slower(training, golden, monkeypatch):
    """The search stops on its step count, never on the clock: a loaded machine gives the same answer.

    Fails before issue 25: the search stopped after 1 s of wall clock, and 32 of 60 answers changed
    on a machine simulated 20× slower."""
    search = CounterfactualSearch(load_model("default"), *training)
    cases = [(3, 8), (7, 2), (0, 6), (1, 7)]
    started = time.perf_counter()
    expected = [search.find(golden[digit], target) for digit, target in cases]
    per_step_s = (time.perf_counter() - started) / sum(answer.steps for answer in expected)
    step = CounterfactualSearch.agreeing  # called at most once a step, on the images the model reads as t

    def slow_step(self, *arguments):  # 20× the measured cost of a step, spent before it
        time.sleep(19 * per_step_s)
        return step(self, *arguments)

    monkeypatch.setattr(CounterfactualSearch, "agreeing", slow_step)
    slow_started = time.perf_counter()
    slow = [search.find(golden[digit], target) for digit, target in cases]
    assert time.perf_counter() - slow_started > 5 * (slow_started - started)  # it did run much slower
    for fast_answer, slow_answer in zip(expected, slow):
        assert np.array_equal(fast_answer.image, slow_answer.image)
        assert (fast_answer.probability, fast_answer.steps) == (slow_answer.probability, slow_answer.steps)


def test_ink_the_target_does_not_need_is_removed(training, golden):
    """A 0 made a 1: most of the ring goes, not only a stroke added over it (a double exposure)."""
    model = load_model("default")
    search = CounterfactualSearch(model, *training)
    drawing = golden[0]
    answer = search.find(drawing, 1)
    removed = np.clip(drawing - answer.image, 0.0, None).sum()
    assert answer.plausible and removed >= 0.5 * drawing.sum()


def test_every_step_changes_pixels_only_to_a_prototypes_values(training, golden):
    """The path: each pixel is the drawing's or the prototype's (as sent), and the largest changes go first."""
    search = CounterfactualSearch(load_model("default"), *training)
    x0 = golden[7].reshape(1, -1).astype(np.float32)
    prototypes = search.prototypes(search.network(), x0, 2)
    paths = Paths(x0, prototypes, search.objective.steps)
    rows = np.arange(len(prototypes))
    previous = np.zeros(len(rows))
    for step in range(1, search.objective.steps + 1):
        images = paths.at(step, rows)
        assert np.all((images == quantise(x0)) | (images == prototypes))
        changes = np.abs(images - quantise(x0)).sum(axis=1)
        assert np.all(changes >= previous - 1e-4)  # the change only grows along a path
        previous = changes
    assert np.array_equal(paths.at(search.objective.steps, rows), prototypes)  # the path ends on the prototype


def test_an_independent_judge_reads_the_counterfactuals_as_their_target(training):
    """A 5-NN over official test digits (never seen by the search or the model) reads ≥ 70 % of the answers
    for 10 other test digits as their target (measured: 80 %; 92 % over the benchmark's 900 searches).
    Fails before issue 25's manifold prior: the blend search scored 34 % on these 90 searches."""
    directory = mnist_dir_from_env()
    if directory is None:
        pytest.skip("MNIST_DIR is not set: the official test digits are not available")
    images, labels = load_idx(directory, "test")
    memory, memory_labels = images[:2500].reshape(2500, -1), labels[:2500]
    search = CounterfactualSearch(load_model("default"), *training)
    found, targets = [], []
    for image in images[9000:9010]:
        prediction = int(model_reads(load_model("default"), image).argmax())
        for target in (t for t in range(10) if t != prediction):
            found.append(search.find(image, target).image.reshape(-1))
            targets.append(target)
    reads = nearest_neighbour_reads(memory, memory_labels, np.array(found))
    assert (reads == np.array(targets)).mean() >= 0.7
