"""server.explain.faithfulness and server.explain.sanity against closed-form cases."""

from itertools import combinations

import numpy as np
import pytest
import torch

from model_store import load_model
from model_store.datasets import load_embedded, split_embedded
from model_store.strokes import load_golden_digits
from server.explain import faithfulness as f
from server.explain.engine import Engine, Request, Selection
from server.explain.sanity import (
    COPIES,
    RANDOM_ORDERS,
    RANDOMIZATIONS,
    SAME_RANKING,
    check,
    judge_randomization,
    randomized_model,
)
from server.raster import rasterize


def test_rank_correlation_reads_absolute_values_on_ink_only():
    rng = np.random.default_rng(0)
    ink = rng.random((28, 28)) > 0.7
    first = rng.normal(size=(28, 28))
    assert f.rank_correlation(first, first, ink) == pytest.approx(1.0)
    assert f.rank_correlation(first, -first, ink) == pytest.approx(1.0)  # a sign flip keeps the ranking
    assert f.rank_correlation(first, 1.0 / (np.abs(first) + 1e-3), ink) == pytest.approx(-1.0)
    other = np.where(ink, first, rng.normal(size=(28, 28)))  # differs on blank pixels only
    assert f.rank_correlation(first, other, ink) == pytest.approx(1.0)
    # Undefined, never 0 (an empty randomised map once read as ρ = 0 and passed).
    assert f.rank_correlation(first, np.ones((28, 28)), ink) is None
    assert f.rank_correlation(first, np.zeros((28, 28)), ink) is None
    assert f.rank_correlation(first, first, np.zeros((28, 28), dtype=bool)) is None


def test_reference_orders_run_over_the_ink_only():
    image = np.zeros((28, 28), dtype=np.float32)
    image[10:14, 8:20] = np.linspace(0.1, 1.0, 48).reshape(4, 12)
    ink = np.flatnonzero(image.ravel() > 0)
    relevance = np.random.default_rng(3).normal(size=(28, 28))
    relevance[image == 0] = -100.0  # blank pixels least relevant of all: still deleted after the ink
    random = f.random_ink_order(image, seed=5)
    least = f.least_relevant_ink_order(relevance, image, seed=5)
    for order in (random, least):
        assert sorted(order[:48].tolist()) == ink.tolist() and sorted(order.tolist()) == list(range(784))
    assert np.all(np.diff(relevance.ravel()[least[:48]]) >= 0)
    assert not np.array_equal(random[:48], f.random_ink_order(image, seed=6)[:48])


def test_relevance_order_is_decreasing_with_seeded_ties():
    relevance = np.array([0.0, 3.0, 0.0, 1.0, 0.0, 2.0])
    order = f.relevance_order(relevance, seed=4)
    assert order[:3].tolist() == [1, 5, 3] and sorted(order[3:].tolist()) == [0, 2, 4]
    assert np.array_equal(order, f.relevance_order(relevance, seed=4))
    tie_orders = {tuple(f.relevance_order(relevance, seed=s)[3:]) for s in range(20)}
    assert len(tie_orders) > 1


def test_deletion_and_insertion_images_remove_and_restore_the_ordered_pixels():
    image = np.arange(1, 17, dtype=np.float32).reshape(4, 4) / 16
    order = np.arange(16)[::-1]
    deleted = f.deletion_images(image, order, steps=3, per_step=2)
    inserted = f.insertion_images(image, order, steps=3, per_step=2)
    assert deleted.shape == inserted.shape == (4, 4, 4)
    for k in range(4):
        gone = order[:2 * k]
        assert not deleted[k].ravel()[gone].any() and np.count_nonzero(deleted[k]) == 16 - 2 * k
        assert np.array_equal(inserted[k].ravel()[gone], image.ravel()[gone])
        assert np.count_nonzero(inserted[k]) == 2 * k


def test_aopc_of_a_linear_model_is_the_mean_of_cumulative_relevance():
    """For f(x) = w·x, deleting in the order of R = w ⊙ x removes exactly the sorted relevance: closed form."""
    rng = np.random.default_rng(1)
    image = (rng.random(64) > 0.5) * rng.random(64)
    w = rng.normal(size=64)
    relevance = w * image
    order = f.relevance_order(relevance, seed=0)
    steps, per_step = 8, 4
    deletion = f.deletion_images(image, order, steps, per_step).reshape(steps + 1, -1) @ w
    insertion = f.insertion_images(image, order, steps, per_step).reshape(steps + 1, -1) @ w
    removed = np.concatenate([[0.0], np.cumsum(np.sort(relevance)[::-1])[per_step - 1::per_step][:steps]])
    assert f.deletion_aopc(deletion) == pytest.approx(removed.mean())
    assert f.insertion_aopc(insertion) == pytest.approx(removed.mean())
    # No order deletes faster: the relevance order is optimal for an additive model.
    for seed in range(10):
        shuffled = f.deletion_images(image, f.random_order(64, seed), steps, per_step).reshape(steps + 1, -1) @ w
        assert f.deletion_aopc(shuffled) <= f.deletion_aopc(deletion) + 1e-12


def test_randomized_copies_are_fixed_and_cascade():
    model = load_model("h16")
    top, both = (randomized_model(model, layers) for _, layers in RANDOMIZATIONS)
    again = randomized_model(model, RANDOMIZATIONS[1][1])
    other = randomized_model(model, RANDOMIZATIONS[1][1], copy_index=1)
    assert not torch.equal(other.fc1.weight, both.fc1.weight) and not torch.equal(other.fc2.weight, both.fc2.weight)
    assert torch.equal(top.fc1.weight, model.fc1.weight) and not torch.equal(top.fc2.weight, model.fc2.weight)
    assert torch.equal(top.fc2.weight, both.fc2.weight) and not torch.equal(both.fc1.weight, model.fc1.weight)
    assert all(torch.equal(a, b) for a, b in zip(both.state_dict().values(), again.state_dict().values()))
    bound = 1 / np.sqrt(784)
    weights = both.fc1.weight.detach()
    assert float(weights.abs().max()) <= bound and float(weights.std()) > 0.5 * bound / np.sqrt(3)


@pytest.fixture(scope="module")
def engine():
    return Engine(load_model("h16"))


def test_sanity_report_of_a_map(engine):
    image = rasterize(load_golden_digits()[4])
    request = Request(image, Selection(output=4), rule="epsilon")
    frame, report = engine.sanity(request)
    assert np.array_equal(frame.heatmap, engine.explain([request])[0].heatmap)
    for (label, layers), step in zip(RANDOMIZATIONS, report.randomized):
        expected = [Engine(randomized_model(load_model("h16"), layers, k), randomized=False).explain([request])[0]
                    for k in range(COPIES)]
        assert step.layers == label and np.array_equal(step.heatmap, expected[0].heatmap)
        rhos = [f.rank_correlation(frame.heatmap, copy.heatmap, image > 0) for copy in expected]
        assert step.correlations == pytest.approx(rhos) and step.rank_correlation == pytest.approx(np.median(rhos))
        pairs = [f.rank_correlation(a.heatmap, b.heatmap, image > 0) for a, b in combinations(expected, 2)]
        assert step.band == pytest.approx((min(pairs), np.median(pairs), max(pairs)))
        assert step.passes == (np.median(rhos) <= np.median(pairs) + max(pairs) - min(pairs)
                               and np.median(pairs) < SAME_RANKING)
    deletion = report.deletion
    assert deletion.curve.shape == deletion.least.shape == (f.STEPS + 1,)
    assert deletion.random.shape == (RANDOM_ORDERS, f.STEPS + 1)
    assert deletion.curve[0] == pytest.approx(frame.logits[4], abs=1e-5)
    assert deletion.aopc == pytest.approx(f.deletion_aopc(deletion.curve))
    assert deletion.passes and deletion.aopc > max(deletion.random_aopcs) and deletion.aopc > deletion.least_aopc
    assert report.passes and report.verdict.startswith("Passes both checks") and not report.empty
    _, again = engine.sanity(request)
    assert np.array_equal(again.deletion.random, deletion.random) and again.verdict == report.verdict


# A fixed set of drawings: the ten golden digits and the first ten embedded held-out digits.
@pytest.fixture(scope="module")
def drawings():
    _, (held_out, _) = split_embedded(*load_embedded())
    return [rasterize(strokes) for strokes in load_golden_digits().values()] + list(held_out[:10])


@pytest.mark.parametrize("name", ["default", "h16"])
def test_the_card_fails_both_controls_and_passes_epsilon(name, drawings):
    """Fails before this issue: the drawing itself passed both checks (ρ < 0.5 against one copy; deletion
    against a random order over all 784 pixels)."""
    engine = Engine(load_model(name))
    for image in drawings:
        for control in ("ink", "edges"):
            _, report = engine.sanity(Request(image, Selection(), method=control))
            assert report.passes_randomization is False and not report.passes, control
            assert all(step.band is not None and step.band[1] >= SAME_RANKING for step in report.randomized)
            assert "it shows the drawing, not the model" in report.verdict
    passing = [engine.sanity(Request(image, Selection(), rule="epsilon"))[1].passes for image in drawings]
    assert np.mean(passing) >= 0.9, passing


def test_a_randomised_map_that_is_empty_is_not_applicable_never_zero():
    """A copy's map without a ranking on the ink has no ρ: it is left out, and with fewer than two copies
    left the step is not applicable, neither passing nor failing."""
    image = rasterize(load_golden_digits()[2])
    real = np.random.default_rng(0).normal(size=(28, 28)) * (image > 0)
    empty = np.zeros((28, 28))
    step = judge_randomization("fc2+fc1", real, [empty, empty, real * 0.5, empty], image > 0, counts=True)
    assert step.correlations[0] is None and step.correlations[2] == pytest.approx(1.0)
    assert step.rank_correlation is None and step.band is None and step.passes is None
    report = check(image, real, {"fc2": [empty] * COPIES, "fc2+fc1": [empty] * COPIES},
                   lambda images: images.reshape(len(images), -1).sum(axis=1), seed=1, per_step=10)
    assert report.passes_randomization is None and not report.passes
    assert report.verdict.startswith("The model check does not apply")


def test_sanity_of_a_neuron_alone_follows_its_pre_activation(engine):
    image = rasterize(load_golden_digits()[2])
    frame, report = engine.sanity(Request(image, Selection(hidden=5)))
    z = float(torch.from_numpy(image).reshape(1, 784) @ load_model("h16").fc1.weight[5].detach()
              + load_model("h16").fc1.bias[5].detach())
    assert frame.mode == "hidden" and report.deletion.curve[0] == pytest.approx(z, abs=1e-5)


def test_an_empty_map_says_so(engine):
    _, report = engine.sanity(Request(np.zeros((28, 28), dtype=np.float32), Selection(), method="lime"))
    assert report.empty and not report.passes_deletion and not report.passes
    assert report.verdict == "This map is empty: there is nothing to check."


def test_sanity_of_a_contrast_follows_the_logit_difference(engine):
    image = rasterize(load_golden_digits()[4])
    frame, report = engine.sanity(Request(image, Selection(output=4, versus=9)))
    assert frame.mode == "contrast"
    assert report.deletion.curve[0] == pytest.approx(float(frame.logits[4] - frame.logits[9]), abs=1e-5)


def test_a_crp_map_is_checked_against_the_fc1_randomisation_only(engine):
    """Re-initialising fc2 rescales a CRP map without changing its ranking: that copy is shown, not counted."""
    image = rasterize(load_golden_digits()[4])
    frame = engine.explain([Request(image, Selection(output=4))])[0]
    j = int(np.argmax(frame.hidden_relevance))
    _, report = engine.sanity(Request(image, Selection(output=4, hidden=j)))
    top, both = report.randomized
    assert top.rank_correlation == pytest.approx(1.0) and not top.counts and both.counts
    assert report.passes_randomization == both.passes
