"""Contrast ("why c and not c′") and knock-out in the engine: definitions, both backends, refusals."""

import itertools

import numpy as np
import pytest
import torch

from model_store import load_model
from model_store.strokes import load_golden_digits
from server.explain.engine import Engine, Request, Selection
from server.explain.rules import RULES
from server.raster import rasterize

MODELS = ("h16", "default")
# Relative to the largest |value| of the maps compared; the maps are float64 sums cast to float32.
FLOAT_PRECISION = 1e-6
BACKENDS_AGREE = 1e-5


@pytest.fixture(scope="module")
def golden() -> list[np.ndarray]:
    return [rasterize(strokes) for strokes in load_golden_digits().values()]


@pytest.fixture(scope="module", params=MODELS)
def engines(request):
    model = load_model(request.param)
    return Engine(model), Engine(model, backend="reference")


def close(ours: np.ndarray, theirs: np.ndarray, tolerance: float) -> bool:
    scale = max(float(np.abs(theirs).max()), float(np.abs(ours).max()))
    return float(np.abs(ours - theirs).max()) <= tolerance * scale


@pytest.mark.parametrize("rule", list(RULES))
def test_contrast_is_the_difference_of_two_lrp_maps_for_every_class_pair(engines, golden, rule):
    """By linearity of every preset in the upper relevance; under ε this is the issue's definition."""
    engine = engines[0]
    for image in golden:
        lrp = engine.explain([Request(image, Selection(c), rule=rule) for c in range(10)])
        pairs = list(itertools.permutations(range(10), 2))
        contrasts = engine.explain([Request(image, Selection(c, versus=v), rule=rule) for c, v in pairs])
        for (c, v), frame in zip(pairs, contrasts):
            assert (frame.mode, frame.target, frame.versus) == ("contrast", c, v)
            assert close(frame.heatmap, lrp[c].heatmap - lrp[v].heatmap, FLOAT_PRECISION), (c, v)
            assert close(frame.hidden_relevance, lrp[c].hidden_relevance - lrp[v].hidden_relevance,
                         FLOAT_PRECISION), (c, v)
            assert frame.conservation["logit"] == pytest.approx(float(lrp[c].logits[c] - lrp[c].logits[v]),
                                                                rel=1e-6, abs=1e-5)  # float32 logits
            shares = frame.hidden_relevance.astype(np.float64)  # float32 terms that largely cancel
            assert frame.conservation["hidden_sum"] == pytest.approx(shares.sum(), abs=1e-6 * np.abs(shares).sum())


def test_neuron_contrast_is_the_difference_of_two_crp_maps(engines, golden):
    engine = engines[0]
    for image in golden[:4]:
        for j in (0, 5, 11):
            first, second, contrast = engine.explain([Request(image, Selection(3, j)), Request(image, Selection(8, j)),
                                                      Request(image, Selection(3, j, versus=8))])
            assert contrast.mode == "contrast"
            assert close(contrast.heatmap, first.heatmap - second.heatmap, FLOAT_PRECISION)
            assert contrast.conservation["hidden_sum"] == pytest.approx(
                float(first.edges[j, 3] - first.edges[j, 8]), rel=1e-5, abs=1e-7)


def knockouts(hidden: int) -> list[tuple[int, ...]]:
    """None, one unit, several, all of them."""
    return [(), (hidden // 2,), tuple(range(0, hidden, 3)), tuple(range(hidden))]


def test_knockout_logits_equal_a_forward_pass_with_those_units_zeroed(engines, golden):
    engine = engines[0]
    model = load_model("h16" if engine.hidden == 16 else "default")
    for knockout in knockouts(engine.hidden):
        frames = engine.explain([Request(image, Selection(), knockout=knockout) for image in golden])
        with torch.no_grad():
            x = torch.from_numpy(np.stack(golden)).reshape(len(golden), -1)
            hidden = torch.relu(model.fc1(x))
            hidden[:, list(knockout)] = 0.0
            expected = model.fc2(hidden)
        for frame, logits, a in zip(frames, expected.numpy(), hidden.numpy()):
            assert np.allclose(frame.logits, logits, rtol=1e-5, atol=1e-5)
            assert np.allclose(frame.activations, a, rtol=1e-5, atol=1e-6)
            assert frame.prediction == int(np.argmax(logits))
            assert not frame.activations[list(knockout)].any()
            assert not frame.edges[list(knockout)].any()  # a silent unit carries no relevance
            assert frame.heatmap.any() == (len(knockout) < engine.hidden)


def test_backends_agree_on_contrast_and_knockout(engines, golden):
    fast, reference = engines
    hidden, rules = fast.hidden, list(RULES)
    requests = []
    for b, image in enumerate(golden):
        knockout = knockouts(hidden)[b % 4]
        selection = [Selection(b, versus=(b + 3) % 10), Selection(b, 2 * b % hidden, versus=(b + 1) % 10),
                     Selection(b), Selection(b, (2 * b + 1) % hidden), Selection(None, b % hidden)][b % 5]
        requests.append(Request(image, selection, rule=rules[b % len(rules)], knockout=knockout))
    for ours, theirs in zip(fast.explain(requests), reference.explain(requests)):
        assert (ours.prediction, ours.target, ours.mode, ours.versus) == \
            (theirs.prediction, theirs.target, theirs.mode, theirs.versus)
        for field in ("logits", "activations", "heatmap", "edges", "hidden_relevance"):
            assert close(getattr(ours, field), getattr(theirs, field), BACKENDS_AGREE), field


def test_captum_methods_see_the_knockout(engines, golden):
    engine = engines[0]
    every_unit = tuple(range(engine.hidden))
    silent, alive = engine.explain([Request(golden[3], Selection(), method="saliency", knockout=every_unit),
                                    Request(golden[3], Selection(), method="saliency")])
    assert not silent.heatmap.any() and alive.heatmap.any()  # with no hidden unit, no pixel moves a logit


@pytest.mark.parametrize("selection, knockout, message", [
    (Selection(3, versus=3), (), "versus must be a class"),
    (Selection(None, versus=3), (), "versus must be a class"),
    (Selection(3, versus=10), (), "versus must be a class"),
    (Selection(3, versus=True), (), "versus must be a class"),
    (Selection(), (1, 1), "lists a unit twice"),
    (Selection(), (16,), "knockout must be a tuple"),
    (Selection(), (-1,), "knockout must be a tuple"),
    (Selection(), [1], "knockout must be a tuple"),
], ids=["versus=output", "versus without output", "versus out of range", "versus bool", "duplicate",
        "out of range", "negative", "list"])
def test_bad_contrast_or_knockout_is_refused(golden, selection, knockout, message):
    engine = Engine(load_model("h16"))
    with pytest.raises(ValueError, match=message):
        engine.explain([Request(golden[0], selection, knockout=knockout)])


def test_knockout_effect_reports_the_intact_reading_and_each_units_own_effect(engines, golden):
    engine = engines[0]
    for image in golden[:5]:
        intact = engine.explain([Request(image, Selection())])[0]
        units = tuple(np.argsort(-np.abs(intact.hidden_relevance))[:3].tolist())
        frame = engine.explain([Request(image, Selection(), knockout=units)])[0]
        effect = frame.knockout
        assert effect.prediction == intact.prediction
        np.testing.assert_allclose(effect.probabilities, intact.probabilities, rtol=1e-5, atol=1e-6)
        total = np.abs(intact.hidden_relevance).sum()
        alone = engine.explain([Request(image, Selection(), knockout=(j,)) for j in units])
        for unit, single in zip(effect.units, alone):
            assert unit.share == pytest.approx(intact.hidden_relevance[unit.unit] / total, rel=1e-4, abs=1e-6)
            expected = single.probabilities[intact.prediction] - intact.probabilities[intact.prediction]
            assert unit.delta_probability == pytest.approx(float(expected), abs=1e-5)
    assert engine.explain([Request(golden[0], Selection())])[0].knockout is None
