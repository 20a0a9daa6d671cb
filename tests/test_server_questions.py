"""The three questions over a real WebSocket: contrast (select versus), knock-out (configure), counterfactual."""

import threading

import numpy as np
import orjson
import pytest
import torch

from model_store import load_model
from model_store.datasets import load_embedded
from model_store.strokes import Stroke
from server.counterfactuals import Counterfactuals
from server.explain.counterfactual import CounterfactualSearch, Objective
from server.explain.engine import Engine, Request, Selection
from server.neurons import Digits
from server.protocol import DEFAULT_RULE, CounterfactualAsk, View
from server.raster import rasterize
from support import Visitor, decode_array, running_app

U8_TOLERANCE = 0.5 / 255 + 1e-6


async def test_versus_gives_a_contrast_frame_equal_to_the_engine(app_url: str,
                                                                 golden_digits: dict[int, list[Stroke]]) -> None:
    strokes = golden_digits[3]
    expected = Engine(load_model()).explain([Request(rasterize(strokes), Selection(3, versus=8), rule=DEFAULT_RULE)])[0]
    async with Visitor.connect(app_url) as visitor:
        await visitor.draw(strokes)
        frame = await visitor.frame_for(await visitor.send("select", output=3, hidden=None, versus=8))
        assert (frame["mode"], frame["target"], frame["output"], frame["versus"]) == ("contrast", 3, 3, 8)
        relevance = frame["hidden_relevance"]
        np.testing.assert_allclose(decode_array(relevance), expected.hidden_relevance, rtol=0,
                                   atol=relevance["scale"] / 2 + 1e-6)
        heatmap = frame["heatmap"]
        np.testing.assert_allclose(decode_array(heatmap), expected.heatmap, rtol=0, atol=heatmap["scale"] / 2 + 1e-6)
        assert frame["conservation"]["logit"] == pytest.approx(expected.conservation["logit"], rel=1e-6)
        cleared = await visitor.frame_for(await visitor.send("select", output=3, hidden=None))
        assert (cleared["mode"], cleared["versus"]) == ("lrp", None)


@pytest.mark.parametrize("fields, code", [
    ({"output": 3, "hidden": None, "versus": 3}, "bad_versus"),
    ({"output": None, "hidden": None, "versus": 8}, "bad_versus"),
    ({"output": 3, "hidden": None, "versus": 10}, "out_of_range"),
    ({"output": 3, "hidden": None, "versus": -1}, "out_of_range"),
    ({"output": 3, "hidden": None, "versus": "8"}, "invalid_message"),
], ids=["versus=output", "no output", "versus=10", "versus=-1", "string"])
async def test_bad_versus_is_refused_and_changes_nothing(app_url: str, golden_digits: dict[int, list[Stroke]],
                                                         fields: dict, code: str) -> None:
    async with Visitor.connect(app_url) as visitor:
        await visitor.draw(golden_digits[3])
        await visitor.frame_for(await visitor.send("select", output=5, hidden=None, versus=2))
        refused = await visitor.send("select", **fields)
        error = await visitor.recv_type("error")
        assert (error["code"], error["seq"]) == (code, refused)
        frame = await visitor.frame_for(await visitor.send("undo"))
        assert (frame["mode"], frame["output"], frame["versus"]) == ("contrast", 5, 2)


def forward_without(model: torch.nn.Module, image: np.ndarray, units: list[int]) -> np.ndarray:
    """Logits of ``image`` with hidden units ``units`` zeroed, by a plain torch forward pass."""
    with torch.no_grad():
        hidden = torch.relu(model.fc1(torch.from_numpy(image).reshape(1, -1)))
        hidden[:, units] = 0.0
        return model.fc2(hidden)[0].numpy()


async def test_knockout_frames_equal_a_forward_pass_with_those_units_zeroed(
        app_url: str, golden_digits: dict[int, list[Stroke]]) -> None:
    strokes, model = golden_digits[7], load_model()
    async with Visitor.connect(app_url) as visitor:
        await visitor.draw(strokes)
        whole = await visitor.frame_for(visitor.seq)
        units = sorted(np.argsort(decode_array(whole["activations"]))[-12:].tolist())  # the twelve most active
        frame = await visitor.frame_for(await visitor.send("configure", knockout=units[::-1]))
        assert frame["knockout"] == units
        image = decode_array(frame["input"])
        np.testing.assert_allclose(frame["logits"], forward_without(model, rasterize(strokes), units),
                                   rtol=1e-5, atol=1e-4)
        assert not decode_array(frame["activations"])[units].any()
        assert not decode_array(frame["edges"])[units].any()
        assert frame["probabilities"][7] != pytest.approx(whole["probabilities"][7])
        effect = frame["knockout_effect"]
        assert effect["prediction"] == whole["prediction"] and effect["probabilities"] == whole["probabilities"]
        assert [unit["unit"] for unit in effect["units"]] == units
        np.testing.assert_allclose(image, rasterize(strokes), rtol=0, atol=U8_TOLERANCE)
        restored = await visitor.frame_for(await visitor.send("configure", knockout=[]))
        assert restored["knockout"] == [] and restored["logits"] == whole["logits"]
        assert restored["knockout_effect"] is None


@pytest.mark.parametrize("knockout, code", [
    ([3, 3], "duplicate_knockout"),
    (list(range(129)), "too_many_knockouts"),
    ([128], "out_of_range"),
    ([-1], "out_of_range"),
    ([1.5], "invalid_message"),
    (7, "invalid_message"),
], ids=["duplicate", "too many", "past H", "negative", "float", "not a list"])
async def test_bad_knockout_is_refused_and_changes_nothing(app_url: str, golden_digits: dict[int, list[Stroke]],
                                                           knockout: object, code: str) -> None:
    async with Visitor.connect(app_url) as visitor:
        assert visitor.welcome["state"]["knockout"] == []
        await visitor.draw(golden_digits[2])
        await visitor.frame_for(await visitor.send("configure", knockout=[1, 2]))
        refused = await visitor.send("configure", rule="zplus", knockout=knockout)
        error = await visitor.recv_type("error")
        assert (error["code"], error["seq"]) == (code, refused)
        frame = await visitor.frame_for(await visitor.send("undo"))
        assert (frame["knockout"], frame["rule"]) == ([1, 2], DEFAULT_RULE)


async def test_a_model_change_restores_every_unit(app_url: str) -> None:
    async with Visitor.connect(app_url) as visitor:
        await visitor.frame_for(await visitor.send("configure", knockout=[100, 120]))
        await visitor.send("configure", model="h16")
        welcome = await visitor.recv_type("welcome")
        assert welcome["state"]["knockout"] == []
        frame = await visitor.frame_for(visitor.seq)
        assert frame["knockout"] == [] and frame["model"] == "h16"


async def test_counterfactual_answers_with_a_drawing_read_as_the_target(
        app_url: str, golden_digits: dict[int, list[Stroke]]) -> None:
    strokes, model = golden_digits[3], load_model()
    async with Visitor.connect(app_url) as visitor:
        await visitor.draw(strokes)
        frame = await visitor.frame_for(visitor.seq)
        asked = await visitor.send("counterfactual", target=8)
        answer = await visitor.recv_type("counterfactual")
        assert (answer["seq"], answer["target"], answer["model"]) == (asked, 8, frame["model"])
        image = decode_array(answer["image"])
        assert answer["image"]["dtype"] == "u8" and image.shape == (28, 28)
        probabilities = torch.softmax(torch.from_numpy(forward_without(model, image, [])), dim=0)
        assert probabilities[8] >= 0.9 and answer["probability"] == pytest.approx(float(probabilities[8]), abs=1e-4)
        assert 0 < answer["changed_ink"] <= 1 and answer["compute_ms"] > 0
        # The search's own answer, with the k-NN prior met: it looks like an 8 to the embedded digits.
        found = CounterfactualSearch(model, *load_embedded()).find(rasterize(strokes), 8)
        assert np.array_equal(np.rint(image * 255), np.rint(found.image * 255))  # the same bytes
        assert (answer["plausible"], answer["agreeing_neighbours"]) == (True, found.agreeing)
        assert found.agreeing >= Objective().agree
        again = await visitor.send("counterfactual", target=8)
        repeated = await visitor.recv_type("counterfactual")
        assert repeated["seq"] == again and repeated["image"] == answer["image"]  # the same drawing, the same answer
        await visitor.send("counterfactual", target=None)
        runner_up = int(np.argsort(frame["probabilities"])[-2])
        assert (await visitor.recv_type("counterfactual"))["target"] == runner_up


async def test_counterfactual_respects_the_knockout(app_url: str, golden_digits: dict[int, list[Stroke]]) -> None:
    strokes, model, units = golden_digits[1], load_model(), [0, 5, 9, 40]
    async with Visitor.connect(app_url) as visitor:
        await visitor.draw(strokes)
        await visitor.send("configure", knockout=units)
        await visitor.send("counterfactual", target=7)
        answer = await visitor.recv_type("counterfactual")
        logits = forward_without(model, decode_array(answer["image"]), units)
        assert torch.softmax(torch.from_numpy(logits), dim=0)[7] >= 0.9


@pytest.mark.parametrize("target", [10, -1, "8", 2.5])
async def test_bad_counterfactual_target_is_refused(app_url: str, target: object) -> None:
    async with Visitor.connect(app_url) as visitor:
        asked = await visitor.send("counterfactual", target=target)
        error = await visitor.recv_type("error")
        assert error["seq"] == asked
        assert error["code"] == ("out_of_range" if isinstance(target, int) else "invalid_message")


def test_no_counterfactual_is_an_error_with_the_request_seq(golden_digits: dict[int, Stroke]) -> None:
    """The service's answer when no training digit qualifies as a prototype (every unit knocked out)."""
    model = load_model("h16")
    service = Counterfactuals({"h16": model}, Digits())
    view = View(41, tuple(tuple(stroke) for stroke in golden_digits[1]), "h16", "lrp", "epsilon", None, None,
                knockout=tuple(range(16)))
    answer = orjson.loads(service.answer(CounterfactualAsk(view, 0)))
    assert (answer["type"], answer["code"], answer["seq"]) == ("error", "no_counterfactual", 41)


async def test_a_counterfactual_past_the_deadline_is_an_error_not_a_closed_connection(
        monkeypatch: pytest.MonkeyPatch, golden_digits: dict[int, list[Stroke]]) -> None:
    """A search held past COMPUTE_DEADLINE_S (a stalled worker, as on a loaded server) answers
    counterfactual_failed; frames go on."""
    release = threading.Event()
    slow = Counterfactuals.answer

    def stalled(self: Counterfactuals, ask: CounterfactualAsk) -> str:
        release.wait(timeout=10)
        return slow(self, ask)

    monkeypatch.setattr(Counterfactuals, "answer", stalled)
    try:
        async with running_app(compute_deadline_s=1.0) as url, Visitor.connect(url) as visitor:
            await visitor.draw(golden_digits[3])
            asked = await visitor.send("counterfactual", target=8)
            error = await visitor.recv_type("error")
            assert (error["code"], error["seq"]) == ("counterfactual_failed", asked)
            frame = await visitor.frame_for(await visitor.send("undo"))
            assert frame["seq"] > asked
    finally:
        release.set()
