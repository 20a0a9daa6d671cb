"""server.explain.engine: batch API, modes, validation, CRP's dependence on the input."""

import threading
from unittest import mock

import numpy as np
import pytest
import torch

from model_store import load_model
from model_store.strokes import load_golden_digits
from server.explain.engine import Engine, FrameData, Request, Selection
from server.explain.methods import METHODS
from server.explain.rules import RULES
from server.raster import rasterize


@pytest.fixture(scope="module")
def model():
    return load_model("h16")


@pytest.fixture(scope="module")
def engine(model):
    return Engine(model)


@pytest.fixture(scope="module")
def golden():
    return {label: rasterize(strokes) for label, strokes in load_golden_digits().items()}


def test_frame_shapes_and_types(engine, golden):
    frame = engine.explain([Request(golden[4], Selection())])[0]
    assert isinstance(frame, FrameData)
    assert frame.prediction == 4 and frame.target == 4 and frame.mode == "lrp"
    for name, shape in [("probabilities", (10,)), ("logits", (10,)), ("activations", (16,)),
                        ("hidden_relevance", (16,)), ("edges", (16, 10)), ("heatmap", (28, 28))]:
        array = getattr(frame, name)
        assert array.shape == shape and array.dtype == np.float32, name
    assert frame.probabilities.sum() == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(frame.hidden_relevance, frame.edges[:, 4])
    assert set(frame.conservation) == {"input_sum", "hidden_sum", "logit"}
    assert frame.conservation["logit"] == pytest.approx(float(frame.logits[4]))


@pytest.mark.parametrize("selection, mode, target", [
    (Selection(), "lrp", 4),
    (Selection(output=7), "lrp", 7),
    (Selection(output=7, hidden=3), "crp", 7),
    (Selection(hidden=3), "hidden", 4),
], ids=["predicted", "class", "crp", "neuron alone"])
def test_selection_decides_mode_and_target(engine, golden, selection, mode, target):
    frame = engine.explain([Request(golden[4], selection)])[0]
    assert (frame.mode, frame.target) == (mode, target)


def test_captum_methods_ignore_the_hidden_selection(engine, golden):
    with_neuron, without = engine.explain([Request(golden[2], Selection(output=5, hidden=3), method="saliency"),
                                           Request(golden[2], Selection(output=5), method="saliency")])
    assert (with_neuron.mode, with_neuron.target) == ("attribution", 5)
    assert np.array_equal(with_neuron.heatmap, without.heatmap)
    assert not with_neuron.hidden_relevance.any() and with_neuron.conservation["hidden_sum"] == 0.0


def test_batch_equals_one_by_one(engine, golden):
    rules, methods = list(RULES), ["lrp", "lrp", "saliency", "gradient_x_input", "lrp"]
    requests = [Request(golden[label], Selection(output=(label + 1) % 10 if label % 2 else None,
                                                 hidden=label if label % 3 else None),
                        method=methods[label % len(methods)], rule=rules[label % len(rules)])
                for label in range(10)]
    batched = engine.explain(requests)
    for request, frame in zip(requests, batched):
        alone = engine.explain([request])[0]
        assert (alone.mode, alone.target, alone.prediction) == (frame.mode, frame.target, frame.prediction)
        assert np.allclose(alone.heatmap, frame.heatmap, rtol=1e-6, atol=1e-7)
        assert np.allclose(alone.edges, frame.edges, rtol=1e-6, atol=1e-7)


def test_crp_map_depends_on_the_drawing(engine, golden):
    """The same (j, c) gives different maps for different digits (the notebook's 'CRP' did not)."""
    frames = engine.explain([Request(golden[label], Selection()) for label in (3, 8)])
    # A neuron active in both drawings, and the class both maps are conditioned on.
    j = int(np.argmax(np.minimum(frames[0].activations, frames[1].activations)))
    assert min(frames[0].activations[j], frames[1].activations[j]) > 0
    three, eight = engine.explain([Request(golden[label], Selection(output=3, hidden=j)) for label in (3, 8)])
    assert np.abs(three.heatmap).max() > 0 and np.abs(eight.heatmap).max() > 0
    correlation = np.corrcoef(three.heatmap.ravel(), eight.heatmap.ravel())[0, 1]
    assert correlation < 0.9
    assert not np.allclose(three.heatmap, eight.heatmap, atol=0.1 * np.abs(three.heatmap).max())


def test_engine_keeps_a_private_model(golden):
    model = load_model("h16")
    engines = [Engine(model), Engine(model, backend="reference")]
    request = [Request(golden[1], Selection())]
    before = [engine.explain(request)[0] for engine in engines]
    with torch.no_grad():
        model.fc2.bias += 100.0
    after = [engine.explain(request)[0] for engine in engines]
    for old, new in zip(before, after):
        assert np.array_equal(old.logits, new.logits)
    # CondAttribution switches requires_grad off on the model it gets: only on the engine's copy.
    assert all(parameter.requires_grad for parameter in model.parameters())


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_an_engine_for_another_thread_shares_only_read_only_tensors(golden, backend):
    engine = Engine(load_model("h16"), backend=backend)
    twin = engine.for_thread()
    assert not any(mine.data_ptr() == theirs.data_ptr()
                   for mine, theirs in zip(twin.model.parameters(), engine.model.parameters()))
    # The fast backend's closed forms are shared; a reference backend hooks its own model copy.
    assert (twin._relevance is engine._relevance) == (backend == "fast")
    requests = [Request(golden[4], Selection()), Request(golden[4], Selection(output=7, hidden=3)),
                Request(golden[4], Selection(output=7), method="saliency")]
    for mine, theirs in zip(twin.explain(requests), engine.explain(requests)):
        assert np.array_equal(mine.heatmap, theirs.heatmap) and np.array_equal(mine.edges, theirs.edges)
    (_, mine), (_, theirs) = twin.sanity(requests[0]), engine.sanity(requests[0])
    assert np.array_equal(mine.deletion.curve, theirs.deletion.curve) and mine.verdict == theirs.verdict
    assert all(np.array_equal(one.heatmap, other.heatmap) for one, other in zip(mine.randomized, theirs.randomized))


def test_twin_engines_compute_side_by_side_in_threads(golden):
    """A captum method with knock-outs hooks the engine's model: each twin must have its own."""
    engine = Engine(load_model("h16"))
    requests = [Request(golden[label], Selection(), method=method, knockout=knockout)
                for label in (1, 4, 7) for method in ("lrp", "saliency") for knockout in ((), (0, 2, 5))]
    expected = [frame.heatmap for frame in engine.explain(requests)]
    mismatches = []

    def compute(twin: Engine) -> None:
        for _ in range(20):
            frames = twin.explain(requests)
            mismatches.extend(index for index, frame in enumerate(frames)
                              if not np.array_equal(frame.heatmap, expected[index]))

    threads = [threading.Thread(target=compute, args=(engine.for_thread(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mismatches == []


def test_all_maps_shapes_and_consistency(engine, golden):
    images = np.stack([golden[0], golden[7]])
    maps = engine.all_maps(images, "zplus")
    assert maps.classes.shape == (2, 10, 28, 28) and maps.hidden.shape == (2, 16, 28, 28)
    frame = engine.explain([Request(golden[7], Selection(output=2), rule="zplus")])[0]
    assert np.allclose(maps.classes[1, 2], frame.heatmap, rtol=1e-6, atol=1e-7)
    neuron = engine.explain([Request(golden[7], Selection(hidden=5), rule="zplus")])[0]
    assert np.allclose(maps.hidden[1, 5], neuron.heatmap, rtol=1e-6, atol=1e-7)


def test_empty_batch(engine):
    assert engine.explain([]) == []


def good_image() -> np.ndarray:
    return np.full((28, 28), 0.5, dtype=np.float32)


def with_pixel(value: float) -> np.ndarray:
    image = good_image()
    image[3, 4] = value
    return image


@pytest.mark.parametrize("request_, message", [
    (Request(with_pixel(np.nan), Selection()), "NaN"),
    (Request(with_pixel(np.inf), Selection()), "NaN or infinite"),
    (Request(np.zeros((28, 27), dtype=np.float32), Selection()), r"shape must be \(28, 28\), got \(28, 27\)"),
    (Request(np.zeros(784, dtype=np.float32), Selection()), "shape must be"),
    (Request(np.zeros((28, 28), dtype=np.uint8), Selection()), "dtype must be floating"),
    (Request([[0.0] * 28] * 28, Selection()), "numpy array"),
    (Request(with_pixel(1.5), Selection()), r"in \[0, 1\]"),
    (Request(with_pixel(-0.1), Selection()), r"in \[0, 1\]"),
    (Request(good_image(), Selection(output=10)), "output class .* got 10"),
    (Request(good_image(), Selection(output=-1)), "output class .* got -1"),
    (Request(good_image(), Selection(output=True)), "output class"),
    (Request(good_image(), Selection(output=2.0)), "output class"),
    (Request(good_image(), Selection(hidden=16)), r"hidden neuron must be an integer in 0\.\.15 .* got 16"),
    (Request(good_image(), Selection(output=1, hidden=-1)), "hidden neuron"),
    (Request(good_image(), Selection(), rule="epsilon-plus"), "unknown rule 'epsilon-plus'"),
    (Request(good_image(), Selection(), method="deeplift"), "unknown method 'deeplift'"),
    (Request(good_image(), (3, None)), "selection must be a Selection"),
], ids=["NaN", "inf", "shape 28x27", "flat", "uint8", "list", "above 1", "below 0", "class 10", "class -1",
        "class bool", "class float", "neuron H", "neuron -1", "rule", "method", "selection tuple"])
def test_bad_request_is_refused_before_the_model_runs(engine, request_, message):
    good = Request(good_image(), Selection())
    with mock.patch.object(engine._relevance, "forward", side_effect=AssertionError("model reached")):
        with pytest.raises(ValueError, match=f"request 1: .*{message}"):
            engine.explain([good, request_])


def test_all_maps_refuses_bad_input(engine):
    with pytest.raises(ValueError, match="unknown rule"):
        engine.all_maps(np.zeros((1, 28, 28), dtype=np.float32), "lrp")
    with pytest.raises(ValueError, match=r"image 1: .*in \[0, 1\]"):
        engine.all_maps(np.stack([good_image(), with_pixel(2.0)]), "epsilon")
    with pytest.raises(ValueError, match=r"\(B, 28, 28\)"):
        engine.all_maps(good_image(), "epsilon")
    with pytest.raises(ValueError, match=r"\(B, 28, 28\)"):
        engine.all_maps(np.zeros((2, 28, 27), dtype=np.float32), "epsilon")


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        Engine(load_model("h16"), backend="gpu")


def test_catalogues_describe_every_entry():
    assert next(iter(METHODS)) == "lrp" and METHODS["lrp"].cost == "per-frame"
    assert {info.cost for info in METHODS.values()} == {"per-frame", "on-pause"}
    assert all(info.label and info.description for info in METHODS.values())
    assert set(RULES) == {"epsilon", "zplus", "alpha2beta1", "zbox", "gamma"}
    assert "Gradient × Input" in RULES["epsilon"].label + RULES["epsilon"].description
    for info in RULES.values():
        assert set(info.layers) == {"fc1", "fc2"}
