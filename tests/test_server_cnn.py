"""The cnn over the real protocol: welcome per model, channel frames, a channel's selection and card, concept maps.

A real server on 127.0.0.1 (in this event loop) and a real WebSocket client; the store's ``cnn``.
"""

from typing import Any

import numpy as np
import orjson

from model_store.references import load_references
from server.explain.cnn import CNN_RULES, CONV_SHAPES
from server.frames import TILE_PX
from support import Visitor, decode_array, fetch, running_app

MAX_FRAME_BYTES = 4000


async def on_cnn(visitor: Visitor) -> dict[str, Any]:
    """Switch ``visitor`` to the cnn; return the new welcome."""
    await visitor.send("configure", model="cnn")
    return await visitor.recv_type("welcome")


async def test_welcome_offers_each_model_only_what_it_can_run(golden_digits) -> None:
    async with running_app() as url, Visitor.connect(url) as visitor:
        mlp_rules = {rule["name"] for rule in visitor.welcome["rules"]}
        mlp_methods = {method["name"] for method in visitor.welcome["methods"]}
        assert "gamma" in mlp_rules and not mlp_rules & set(CNN_RULES)
        assert "gradcam" not in mlp_methods and visitor.welcome["model"]["family"] == "mlp"
        welcome = await on_cnn(visitor)
        assert [rule["name"] for rule in welcome["rules"]] == list(CNN_RULES)
        assert {"gradcam", "hirescam", "lrp"} <= {method["name"] for method in welcome["methods"]}
        assert welcome["state"]["rule"] == "epsilon_plus_flat"  # the MLP's rule fell back to the cnn's default
        units = welcome["model"]["units"]
        assert [(unit["name"], unit["kind"]) for unit in units] == [
            ("input", "input"), ("conv1", "conv"), ("conv2", "conv"), ("fc1", "dense"), ("fc2", "output")]
        assert {unit["name"]: tuple(unit["shape"]) for unit in units if unit["kind"] == "conv"} == CONV_SHAPES
        entry = next(model for model in welcome["models"] if model["name"] == "cnn")
        assert entry["family"] == "cnn" and entry["rules"] == list(CNN_RULES)
        # An MLP rule or a conv method on the wrong model is refused, naming what is allowed.
        await visitor.send("configure", rule="gamma")
        error = await visitor.recv_type("error")
        assert error["code"] == "unknown_option" and "epsilon_plus_flat" in error["message"]


async def test_a_cnn_frame_carries_its_channels_within_the_size_limit(golden_digits) -> None:
    async with running_app() as url, Visitor.connect(url) as visitor:
        await on_cnn(visitor)
        seq = await visitor.draw(golden_digits[7])
        raw = await final_raw_frame(visitor, seq)
        frame = orjson.loads(raw)
        assert len(raw) <= MAX_FRAME_BYTES, len(raw)
        assert frame["prediction"] == 7 and frame["mode"] == "lrp" and frame["feeds"] is None
        assert frame["activations"] is None and frame["edges"] is None  # a cnn's bytes go to its channels
        for layer, (channels, side, _) in CONV_SHAPES.items():
            activations = decode_array(frame["channels"][layer]["activations"])
            relevance = decode_array(frame["channels"][layer]["relevance"])
            tile = min(side, TILE_PX)
            assert activations.shape == (channels, tile, tile) and activations.max() > 0
            assert relevance.shape == (channels,) and np.abs(relevance).max() > 0


async def test_the_largest_cnn_frame_fits(golden_digits) -> None:
    """The longest rule name, a conv2 channel selected (feeds), a busy drawing: still ≤ 4,000 bytes."""
    async with running_app() as url, Visitor.connect(url) as visitor:
        await on_cnn(visitor)
        await visitor.send("configure", rule=max(CNN_RULES, key=len))
        await visitor.send("select", output=8, hidden=15, layer="conv2")
        seq = await visitor.draw(golden_digits[8] + golden_digits[0] + golden_digits[4])
        raw = await final_raw_frame(visitor, seq)
        assert orjson.loads(raw)["feeds"] is not None and len(raw) <= MAX_FRAME_BYTES, len(raw)


async def test_selecting_a_channel_conditions_the_map(golden_digits) -> None:
    async with running_app() as url, Visitor.connect(url) as visitor:
        await on_cnn(visitor)
        whole = orjson.loads(await final_raw_frame(visitor, await visitor.draw(golden_digits[3])))
        ranked = np.argsort(-decode_array(whole["channels"]["conv2"]["relevance"]))
        seq = await visitor.send("select", output=None, hidden=int(ranked[0]), layer="conv2")
        channel = await visitor.frame_for(seq)
        assert (channel["mode"], channel["layer"], channel["hidden"]) == ("crp", "conv2", int(ranked[0]))
        assert channel["target"] == whole["target"] == 3
        assert channel["feeds"]["layer"] == "conv1" and decode_array(channel["feeds"]["relevance"]).shape == (8,)
        assert not np.array_equal(decode_array(channel["heatmap"]), decode_array(whole["heatmap"]))
        assert channel["conservation"]["hidden_sum"] > 0  # the most relevant channel carries evidence for 3
        for bad, code in (({"hidden": 16, "layer": "conv2"}, "out_of_range"),
                          ({"hidden": 0, "layer": "conv9"}, "unknown_option"),
                          ({"hidden": 0, "layer": "conv1", "output": 1, "versus": 2}, "bad_versus")):
            await visitor.send("select", **{"output": None, **bad})
            assert (await visitor.recv_type("error"))["code"] == code, bad


async def test_concept_maps_and_cards(golden_digits) -> None:
    async with running_app() as url, Visitor.connect(url) as visitor:
        await on_cnn(visitor)
        await final_raw_frame(visitor, await visitor.draw(golden_digits[9]))
        await visitor.send("concepts", layer="conv1")
        concepts = await visitor.recv_type("concepts")
        maps = decode_array(concepts["maps"])
        assert concepts["layer"] == "conv1" and concepts["target"] == 9 and maps.shape == (8, 28, 28)
        assert np.abs(maps).max() > 0
        await visitor.send("concepts", layer="fc1")
        assert (await visitor.recv_type("error"))["code"] == "unknown_option"

        status, body = await fetch(url + "/api/models/cnn/concepts/conv2/5")
        card = orjson.loads(body)
        stored = load_references("cnn")["conv2"]["relevance"]
        assert status == 200 and card["relmax"]["index"] == stored.index[5].tolist()
        assert decode_array(card["relmax"]["patch"]).shape == stored.patch[5].shape
        assert decode_array(card["actmax"]["heatmap"]).shape == (len(stored.index[5]), 28, 28)
        for path in ("/api/models/cnn/concepts/conv2/16", "/api/models/cnn/concepts/conv7/0",
                     "/api/models/default/concepts/conv1/0", "/api/models/cnn/neurons/0",
                     "/api/models/cnn/weights"):
            assert (await fetch(url + path))[0] == 404, path


async def final_raw_frame(visitor: Visitor, seq: int) -> bytes:
    """The raw text of the first frame reflecting ``seq``."""
    while True:
        raw = await visitor.connection.recv()
        message = orjson.loads(raw)
        if message["type"] == "error":
            raise AssertionError(f"refused: {message}")
        if message["type"] == "frame" and message["seq"] is not None and message["seq"] >= seq:
            return raw.encode() if isinstance(raw, str) else raw
