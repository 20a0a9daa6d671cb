"""Over a real WebSocket: the ``sanity`` request/response, and maps that repeat bit for bit."""

from typing import Any

import numpy as np
import pytest

from model_store import load_model
from model_store.strokes import Stroke
from server.explain.engine import Engine, Request, Selection
from server.explain.family import FAMILIES
from server.explain.sanity import RANDOM_ORDERS, SAME_RANKING
from server.raster import rasterize
from support import Visitor, decode_array, running_app


async def final_frame(visitor: Visitor, seq: int) -> dict[str, Any]:
    """The first frame for ``seq`` with its heatmap (an on-pause method's comes after the pause)."""
    while True:
        frame = await visitor.frame_for(seq)
        if not frame["pending"]:
            return frame


async def test_sanity_answers_with_the_engine_s_report(golden_digits: dict[int, list[Stroke]]) -> None:
    strokes = golden_digits[4]
    engine = Engine(load_model(None))
    # The neuron that speaks most for the 4: its CRP map is far from empty.
    j = int(np.argmax(engine.explain([Request(rasterize(strokes), Selection(4))])[0].hidden_relevance))
    async with running_app(pause_ms=50.0) as url, Visitor.connect(url) as visitor:
        await visitor.send("configure", rule="zplus")
        await visitor.send("select", output=4, hidden=j)
        await final_frame(visitor, await visitor.draw(strokes))
        seq = await visitor.send("sanity")
        report = await visitor.recv_type("sanity")
    frame, expected = engine.sanity(Request(rasterize(strokes), Selection(4, j), method="lrp", rule="zplus"))
    assert (report["seq"], report["method"], report["rule"], report["output"], report["hidden"]) == \
        (seq, "lrp", "zplus", 4, j)
    assert (report["target"], report["mode"]) == (4, "crp")
    assert [item["layers"] for item in report["randomized"]] == ["fc2", "fc2+fc1"]
    for item, randomized in zip(report["randomized"], expected.randomized):
        assert item["rank_correlation"] == pytest.approx(randomized.rank_correlation, abs=1e-4)
        assert item["correlations"] == [None if rho is None else pytest.approx(rho, abs=1e-4)
                                        for rho in randomized.correlations]
        assert item["passes"] == randomized.passes and item["counts"] == randomized.counts
        if randomized.band is None:
            assert item["band"] is None
        else:
            assert [item["band"][key] for key in ("low", "median", "high")] == pytest.approx(randomized.band, abs=1e-4)
        np.testing.assert_allclose(decode_array(item["heatmap"]), randomized.heatmap, rtol=0,
                                   atol=item["heatmap"]["scale"] / 2 + 1e-6)
    np.testing.assert_allclose(decode_array(report["heatmap"]), frame.heatmap, rtol=0,
                               atol=report["heatmap"]["scale"] / 2 + 1e-6)
    deletion = report["deletion"]
    assert len(deletion["curve"]) == len(deletion["least"]) == 21 and deletion["pixels_per_step"] == 10
    assert len(deletion["random"]) == RANDOM_ORDERS and all(len(curve) == 21 for curve in deletion["random"])
    np.testing.assert_allclose(deletion["curve"], expected.deletion.curve, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(deletion["least"], expected.deletion.least, rtol=1e-5, atol=1e-5)
    assert deletion["aopc"] == pytest.approx(expected.deletion.aopc, abs=1e-4)
    assert deletion["least_aopc"] == pytest.approx(expected.deletion.least_aopc, abs=1e-4)
    assert [deletion["random_aopc"][key] for key in ("low", "median", "high")] == \
        pytest.approx(expected.deletion.random_band, abs=1e-4)
    # Insertion, the mirror image: from the blank canvas's score back to the drawing's, the map's order first.
    assert len(deletion["insertion"]) == 21
    np.testing.assert_allclose(deletion["insertion"], expected.deletion.insertion, rtol=1e-5, atol=1e-5)
    assert deletion["insertion"][-1] != deletion["insertion"][0]
    assert deletion["insertion_aopc"] == pytest.approx(float(np.mean(np.asarray(deletion["insertion"])
                                                                      - deletion["insertion"][0])), abs=1e-4)
    assert report["passes"] == {"randomization": expected.passes_randomization, "deletion": expected.passes_deletion}
    assert report["verdict"] == expected.verdict and report["empty"] is False
    assert report["same_ranking"] == SAME_RANKING


async def test_the_controls_are_offered_labelled_and_fail_the_card(golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(pause_ms=50.0) as url, Visitor.connect(url) as visitor:
        welcome = visitor.welcome
        controls = [method for method in welcome["methods"] if method["control"]]
        assert [method["name"] for method in controls] == ["ink", "edges"]
        assert all(method["label"].startswith("Control:") for method in controls)
        assert welcome["limits"]["max_compare_methods"] >= len(welcome["methods"])
        await final_frame(visitor, await visitor.draw(golden_digits[3]))
        await visitor.send("compare", methods=[method["name"] for method in welcome["methods"]])
        comparison = await visitor.recv_type("comparison")
        assert {item["method"]: item["control"] for item in comparison["maps"]}["edges"] is True
        for control in ("ink", "edges"):
            await visitor.send("configure", method=control)
            await visitor.send("clear")
            await final_frame(visitor, await visitor.draw(golden_digits[3]))
            await visitor.send("sanity")
            report = await visitor.recv_type("sanity")
            assert report["method"] == control and report["passes"]["randomization"] is False
            assert "it shows the drawing, not the model" in report["verdict"]


async def test_a_blank_pad_s_sanity_says_the_map_is_empty() -> None:
    async with running_app() as url, Visitor.connect(url) as visitor:
        await visitor.frame_for(None)
        await visitor.send("sanity")
        report = await visitor.recv_type("sanity")
    assert report["empty"] is True and report["verdict"] == "This map is empty: there is nothing to check."


async def test_every_method_repeats_its_map_bit_for_bit(golden_digits: dict[int, list[Stroke]]) -> None:
    """The same drawing twice, and by a second visitor drawing meanwhile: identical heatmap bytes."""
    async with running_app(pause_ms=50.0) as url, Visitor.connect(url) as first, Visitor.connect(url) as second:
        for method in FAMILIES["mlp"].methods:  # the default model's
            maps = []
            for visitor, digit in ((first, 3), (second, 8), (first, 3), (second, 3)):
                await visitor.send("configure", method=method)
                await visitor.send("clear")
                frame = await final_frame(visitor, await visitor.draw(golden_digits[digit]))
                maps.append((digit, frame["heatmap"]["scale"], frame["heatmap"]["data"]))
            assert maps[0] == maps[2] == maps[3], method
            assert maps[1] != maps[0], method
