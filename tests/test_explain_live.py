"""The NumPy live lane (server.explain.live) gives the frames the torch backend gives, field by field.

The torch backend is held equal to zennit and zennit-crp (test_explain_backends.py); the engine sends a
batch to the lane whenever every request is an LRP-family map (or no map), so these batches cover every
mode, preset, knock-out and silent neuron the lane computes, alone and mixed in one batch.
"""

import dataclasses

import numpy as np
import pytest

from model_store import load_model
from model_store.strokes import load_golden_digits
from server.explain.engine import Engine, Request, Selection
from server.explain.rules import RULES
from server.raster import rasterize

ARRAYS = ("probabilities", "logits", "activations", "hidden_relevance", "edges", "heatmap")
SCALARS = ("prediction", "target", "mode", "versus", "neuron_silent")


def images() -> np.ndarray:
    drawings = list(load_golden_digits().values())
    return np.stack([rasterize(strokes) for strokes in drawings] + [np.zeros((28, 28), np.float32)])


def selections(hidden: int, silent: int) -> list[tuple[Selection, tuple[int, ...], bool, str]]:
    """(selection, knock-out, heatmap, method) of every kind the lane serves, plus a silent neuron alone."""
    return [
        (Selection(), (), True, "lrp"),
        (Selection(3), (), True, "lrp"),
        (Selection(3, hidden - 1), (), True, "lrp"),
        (Selection(None, 2), (), True, "lrp"),
        (Selection(None, silent), (), True, "lrp"),
        (Selection(4, None, 9), (), True, "lrp"),
        (Selection(4, 1, 9), (), True, "lrp"),
        (Selection(7), (0, 1, hidden - 1), True, "lrp"),
        (Selection(None, 5), (5,), True, "lrp"),
        (Selection(), (), False, "occlusion"),
    ]


def frames_both_ways(engine: Engine, requests: list[Request]):
    live = engine.explain(requests)
    assert engine._live is not None and engine._live.covers(
        [r.method for r in requests], [r.heatmap for r in requests], [r.rule for r in requests])
    torch_frames = engine._frames(requests, engine._torch_batch(np.stack([r.image for r in requests]), requests))
    return live, torch_frames


def assert_same(live, expected) -> None:
    for name in SCALARS:
        assert getattr(live, name) == getattr(expected, name), name
    for name in ARRAYS:
        ours, theirs = getattr(live, name), getattr(expected, name)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, name
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * max(1e-12, float(np.abs(theirs).max())),
                                   err_msg=name)
    for key, value in expected.conservation.items():
        assert live.conservation[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    for name in ("class_max_abs", "neuron_share"):
        theirs = getattr(expected, name)
        assert getattr(live, name) == (None if theirs is None else pytest.approx(theirs, rel=1e-9)), name
    if expected.knockout is None:
        assert live.knockout is None
    else:
        assert live.knockout.prediction == expected.knockout.prediction
        assert [u.unit for u in live.knockout.units] == [u.unit for u in expected.knockout.units]


@pytest.mark.parametrize("name", ["h16", "default"])
@pytest.mark.parametrize("rule", list(RULES))
def test_every_kind_of_live_frame_equals_the_torch_backend(name, rule):
    engine = Engine(load_model(name), randomized=False)
    drawn = images()
    z1 = engine.explain([Request(drawn[0], Selection(), rule=rule)])[0].activations
    silent = int(np.flatnonzero(z1 <= 0)[0])
    requests = [Request(image, selection, method=method, rule=rule, knockout=knockout, heatmap=heatmap)
                for image in drawn for selection, knockout, heatmap, method in selections(engine.hidden, silent)]
    live, expected = frames_both_ways(engine, requests)
    assert any(frame.neuron_silent for frame in live), "a silent neuron alone is in the batch"
    for ours, theirs in zip(live, expected, strict=True):
        assert_same(ours, theirs)


def test_a_batch_mixing_presets_equals_one_call_per_preset():
    engine = Engine(load_model("h16"), randomized=False)
    drawn = images()
    rules = list(RULES)
    requests = [Request(image, Selection(b % 10, b % 16 if b % 3 else None), rule=rules[b % len(rules)])
                for b, image in enumerate(drawn)]
    live, expected = frames_both_ways(engine, requests)
    for request, ours, theirs in zip(requests, live, expected, strict=True):
        assert_same(ours, theirs)
        alone = engine.explain([request])[0]
        np.testing.assert_array_equal(alone.heatmap, ours.heatmap)


def test_a_batch_with_another_method_goes_through_torch():
    engine = Engine(load_model("h16"), randomized=False)
    drawn = images()[:2]
    requests = [Request(drawn[0], Selection()), Request(drawn[1], Selection(), method="saliency")]
    assert not engine._live.covers([r.method for r in requests], [r.heatmap for r in requests],
                                   [r.rule for r in requests])
    frames = engine.explain(requests)
    assert frames[1].mode == "attribution" and np.abs(frames[1].heatmap).max() > 0
    lrp_alone = engine.explain(requests[:1])[0]
    np.testing.assert_allclose(frames[0].heatmap, lrp_alone.heatmap, rtol=1e-6, atol=1e-9)


def test_bad_images_are_named_in_a_batch():
    engine = Engine(load_model("h16"), randomized=False)
    good = images()[0]
    for bad, message in [(good * 2, "values must lie in"), (good[:27], "shape"),
                         (np.where(good > 0, np.nan, good).astype(np.float32), "NaN"),
                         ((good * 255).astype(np.uint8), "dtype")]:
        requests = [Request(good, Selection()), dataclasses.replace(Request(good, Selection()), image=bad)]
        with pytest.raises(ValueError, match=f"request 1: .*{message}"):
            engine.explain(requests)
