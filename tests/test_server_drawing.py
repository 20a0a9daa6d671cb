"""Drawing over a real WebSocket: predictions, inputs and heatmaps equal the engine's own results."""

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from torch import nn

from model_store import load_model
from model_store.strokes import Stroke
from server.explain.engine import Engine, FrameData, Request, Selection
from server.protocol import DEFAULT_RULE
from server.raster import rasterize
from support import Visitor, decode_array, running_app

U8_TOLERANCE = 0.5 / 255 + 1e-6


def assert_quantised_equal(array: dict[str, Any], expected: np.ndarray) -> None:
    """An i8 (signed) or u8 (non-negative) array is within ``scale / 2`` of the engine's values, and ±127 (255)
    is ±max (docs/protocol.md, "Array encoding")."""
    levels = {"i8": 127, "u8": 255}[array["dtype"]]
    assert array["shape"] == list(expected.shape)
    assert array["scale"] == pytest.approx(float(np.abs(expected).max()) / levels, rel=1e-5)
    np.testing.assert_allclose(decode_array(array), expected, rtol=0, atol=array["scale"] / 2 + 1e-6)


def assert_heatmap_equal(array: dict[str, Any], expected: np.ndarray) -> None:
    assert array["dtype"] == "i8" and array["shape"] == [28, 28]
    assert_quantised_equal(array, expected)


def engine_frame(strokes: list[Stroke], output: int | None = None, hidden: int | None = None,
                 method: str = "lrp", rule: str | None = DEFAULT_RULE, model: str | None = None) -> Any:
    engine = Engine(load_model(model))
    return engine.explain([Request(rasterize(strokes), Selection(output, hidden), method=method, rule=rule)])[0]


async def test_golden_digits_drawn_as_strokes_are_recognised(app_url: str,
                                                             golden_digits: dict[int, list[Stroke]]) -> None:
    async with Visitor.connect(app_url) as visitor:
        first = await visitor.frame_for(None)
        assert first["seq"] is None and not decode_array(first["input"]).any()
        for digit, strokes in golden_digits.items():
            await visitor.send("clear")
            frame = await visitor.frame_for(await visitor.draw(strokes))
            assert frame["prediction"] == digit
            assert frame["target"] == digit and frame["mode"] == "lrp"
            np.testing.assert_allclose(decode_array(frame["input"]), rasterize(strokes), rtol=0, atol=U8_TOLERANCE)


@pytest.mark.parametrize("rule", ["epsilon", "zplus"])
async def test_frame_equals_the_engine_for_every_selection(app_url: str, golden_digits: dict[int, list[Stroke]],
                                                           rule: str) -> None:
    strokes = golden_digits[3]
    async with Visitor.connect(app_url) as visitor:
        await visitor.send("configure", rule=rule)
        await visitor.draw(strokes)
        for output, hidden, mode in [(None, None, "lrp"), (5, None, "lrp"), (3, 7, "crp"), (None, 7, "hidden")]:
            frame = await visitor.frame_for(await visitor.send("select", output=output, hidden=hidden))
            expected = engine_frame(strokes, output, hidden, rule=rule)
            assert (frame["output"], frame["hidden"], frame["mode"], frame["rule"]) == (output, hidden, mode, rule)
            assert frame["target"] == expected.target and frame["prediction"] == expected.prediction
            assert_heatmap_equal(frame["heatmap"], expected.heatmap)
            assert (frame["activations"]["dtype"], frame["hidden_relevance"]["dtype"]) == ("u8", "i8")
            assert_quantised_equal(frame["activations"], expected.activations)
            assert_quantised_equal(frame["hidden_relevance"], expected.hidden_relevance)
            assert frame["edges"]["dtype"] == "i8"  # the target's column only: what the page draws
            assert_quantised_equal(frame["edges"], expected.edges[:, expected.target])
            np.testing.assert_allclose(frame["probabilities"], expected.probabilities, rtol=1e-6)
            assert frame["conservation"]["logit"] == pytest.approx(expected.conservation["logit"])


async def test_undo_and_clear_change_the_input(app_url: str, golden_digits: dict[int, list[Stroke]]) -> None:
    two = [stroke for stroke in golden_digits.values() if len(stroke) >= 2][0]
    async with Visitor.connect(app_url) as visitor:
        await visitor.draw(two[:2])
        frame = await visitor.frame_for(await visitor.send("undo"))
        np.testing.assert_allclose(decode_array(frame["input"]), rasterize(two[:1]), rtol=0, atol=U8_TOLERANCE)
        frame = await visitor.frame_for(await visitor.send("clear"))
        assert not decode_array(frame["input"]).any()
        assert frame["heatmap"]["scale"] == 0.0


async def test_model_change_sends_welcome_then_frame_of_that_model(app_url: str,
                                                                   golden_digits: dict[int, list[Stroke]]) -> None:
    async with Visitor.connect(app_url) as visitor:
        others = [m["name"] for m in visitor.welcome["models"] if m["name"] != visitor.welcome["model"]["name"]]
        if not others:
            pytest.skip("the store holds a single model")
        await visitor.draw(golden_digits[2])
        for other in others:  # every other model, of either family
            await visitor.send("select", output=2, hidden=3)
            await visitor.frame_for(visitor.seq)
            seq = await visitor.send("configure", model=other)
            welcome = await visitor.recv()
            frame = await visitor.recv()
            assert welcome["type"] == "welcome" and welcome["model"]["name"] == other
            assert (welcome["state"]["output"], welcome["state"]["hidden"]) == (None, None)
            assert frame["type"] == "frame" and frame["seq"] == seq and frame["model"] == other
            if welcome["model"]["family"] == "cnn":  # a cnn's frame carries its channels instead of fc1's arrays
                assert frame["activations"] is None and set(frame["channels"]) == {"conv1", "conv2"}
            else:
                assert frame["activations"]["shape"] == [welcome["model"]["hidden"]]
            expected = engine_frame(golden_digits[2], rule=welcome["state"]["rule"], model=other)
            assert frame["prediction"] == expected.prediction


async def test_on_pause_method_is_pending_while_drawing_then_computed(golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(pause_ms=500.0) as url, Visitor.connect(url) as visitor:
        slow = [m["name"] for m in visitor.welcome["methods"] if m["cost"] == "on-pause"]
        method = "integrated_gradients" if "integrated_gradients" in slow else slow[0]
        await visitor.send("configure", method=method)
        await visitor.frame_for(visitor.seq)
        seq = await visitor.draw(golden_digits[4])
        pending = await visitor.frame_for(seq)
        assert pending["pending"] is True and pending["heatmap"] is None and pending["mode"] == "attribution"
        done = await visitor.recv_type("frame")
        assert done["seq"] == seq and done["pending"] is False and done["mode"] == "attribution"
        expected = engine_frame(golden_digits[4], method=method)
        assert_heatmap_equal(done["heatmap"], expected.heatmap)
        assert not decode_array(done["hidden_relevance"]).any()
        assert pending["prediction"] == done["prediction"] == expected.prediction
        np.testing.assert_array_equal(decode_array(pending["edges"]), decode_array(done["edges"]))


async def test_switching_away_from_an_on_pause_method_cancels_its_pending_frame(
        golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(pause_ms=500.0) as url, Visitor.connect(url) as visitor:
        slow = next(m["name"] for m in visitor.welcome["methods"] if m["cost"] == "on-pause")
        await visitor.send("configure", method=slow)
        await visitor.frame_for(visitor.seq)
        assert (await visitor.frame_for(await visitor.draw(golden_digits[4])))["pending"] is True
        switched = await visitor.frame_for(await visitor.send("configure", method="lrp"))
        assert switched["pending"] is False and switched["heatmap"] is not None
        with pytest.raises(TimeoutError):  # the pause passes: nothing new to show, so no frame
            await visitor.recv(timeout_s=1.2)


async def test_compare_answers_one_map_per_method(app_url: str, golden_digits: dict[int, list[Stroke]]) -> None:
    async with Visitor.connect(app_url) as visitor:
        frame = await visitor.frame_for(await visitor.draw(golden_digits[6]))
        seq = await visitor.send("compare", methods=["lrp", "saliency"])
        comparison = await visitor.recv_type("comparison")
        assert comparison["seq"] == seq and comparison["target"] == frame["prediction"] == 6
        assert [entry["method"] for entry in comparison["maps"]] == ["lrp", "saliency"]
        assert_heatmap_equal(comparison["maps"][0]["heatmap"], engine_frame(golden_digits[6]).heatmap)
        assert_heatmap_equal(comparison["maps"][1]["heatmap"],
                             engine_frame(golden_digits[6], method="saliency").heatmap)


class SlowSaliencyEngine:
    """Test-only: the real engine, except that a saliency map takes a whole second (``started`` is set then)."""

    started = threading.Event()

    def __init__(self, model: nn.Module, backend: str) -> None:
        self.engine = Engine(model, backend=backend)

    def explain(self, requests: Sequence[Request]) -> list[FrameData]:
        if any(request.method == "saliency" for request in requests):
            SlowSaliencyEngine.started.set()
            time.sleep(1.0)
        return self.engine.explain(requests)


async def test_a_slow_comparison_does_not_hold_up_live_frames(golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(engine_factory=SlowSaliencyEngine) as url, Visitor.connect(url) as visitor:
        await visitor.frame_for(await visitor.draw(golden_digits[6]))
        compare_seq = await visitor.send("compare", methods=["lrp", "saliency"])
        sent = time.monotonic()
        stroke_seq = await visitor.draw(golden_digits[1])  # drawn while the comparison computes
        first = await visitor.recv()
        while first["type"] == "frame" and first["seq"] < stroke_seq:
            first = await visitor.recv()
        assert first["type"] == "frame" and first["seq"] >= stroke_seq, "the frame waited for the comparison"
        assert time.monotonic() - sent < 0.5, "the frame waited for the 1 s saliency map"
        comparison = await visitor.recv_type("comparison")
        assert comparison["seq"] >= compare_seq and len(comparison["maps"]) == 2


async def test_a_comparison_overtaken_by_a_model_change_is_dropped(golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(engine_factory=SlowSaliencyEngine) as url, Visitor.connect(url) as visitor:
        await visitor.frame_for(await visitor.draw(golden_digits[6]))
        SlowSaliencyEngine.started.clear()
        await visitor.send("compare", methods=["saliency"])
        assert await asyncio.to_thread(SlowSaliencyEngine.started.wait, 10), "the comparison never began"
        await visitor.send("configure", model="h16")  # while the old model's saliency map computes
        assert (await visitor.recv_type("welcome"))["model"]["name"] == "h16"
        later = []
        with pytest.raises(TimeoutError):  # the saliency map (1 s) is done within this wait
            while True:
                later.append((await visitor.recv(timeout_s=2.0))["type"])
        assert "comparison" not in later, "maps of the old model were sent after the model change"
