"""Behaviour under load: latest-wins, floods, micro-batching across visitors, slow methods, the baseline mode."""

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import orjson
import pytest
from starlette import status
from torch import nn
from websockets.exceptions import ConnectionClosed

from model_store.strokes import Stroke
from server.explain.engine import METHODS, Engine, FrameData, Request
from server.raster import rasterize
from support import Visitor, decode_array, metric, running_app

U8_TOLERANCE = 0.5 / 255 + 1e-6


def point_messages(count: int, first_seq: int = 1) -> tuple[list[str], list[list[float]]]:
    """``count`` one-point messages extending stroke 0 along a curve; the messages and all points."""
    points = [[0.3 + 0.4 * k / count, 0.2 + 0.6 * (k / count) ** 2] for k in range(count)]
    messages = [orjson.dumps({"type": "stroke", "seq": first_seq + k, "id": 0, "points": [point]}).decode()
                for k, point in enumerate(points)]
    return messages, points


async def frames_until(visitor: Visitor, seq: int) -> list[dict]:
    """Every frame up to and including the first that reflects ``seq``."""
    frames = []
    while not frames or frames[-1]["seq"] is None or frames[-1]["seq"] < seq:
        message = await visitor.recv()
        assert message["type"] == "frame", f"unexpected {message['type']}: {message}"
        frames.append(message)
    return frames


async def test_latest_wins_folds_200_messages_into_few_frames(app_url: str) -> None:
    async with Visitor.connect(app_url) as visitor:
        await visitor.frame_for(None)
        messages, points = point_messages(200)
        for text in messages:  # sent without reading a single frame
            await visitor.send_raw(text)
        frames = await frames_until(visitor, 200)
        assert frames[-1]["seq"] == 200
        assert len(frames) < 20, f"{len(frames)} frames for 200 messages"
        assert [frame["seq"] for frame in frames] == sorted(frame["seq"] for frame in frames)
        np.testing.assert_allclose(decode_array(frames[-1]["input"]), rasterize([points]), rtol=0, atol=U8_TOLERANCE)
        assert await metric(app_url, "xai_frames_coalesced_total") == 200 - len(frames)


async def test_baseline_mode_sends_one_frame_per_message_in_order() -> None:
    async with running_app(coalesce=False) as url, Visitor.connect(url) as visitor:
        await visitor.frame_for(None)
        messages, points = point_messages(30)
        for text in messages:
            await visitor.send_raw(text)
        frames = await frames_until(visitor, 30)
        assert [frame["seq"] for frame in frames] == list(range(1, 31))
        np.testing.assert_allclose(decode_array(frames[-1]["input"]), rasterize([points]), rtol=0, atol=U8_TOLERANCE)
        assert await metric(url, "xai_inference_batch_size_bucket", le="1.0") == \
            await metric(url, "xai_inference_batch_size_count")


async def test_flood_is_rate_limited_and_closed_while_others_are_served(
        golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(max_messages_per_s=100, max_errors=20) as url, \
            Visitor.connect(url) as flooder, Visitor.connect(url) as bystander:
        messages, _ = point_messages(1000)
        try:
            for text in messages:
                await flooder.send_raw(text)
        except ConnectionClosed:
            pass  # closed 1008 mid-flood, as intended: asserted below
        frame = await bystander.frame_for(await bystander.draw(golden_digits[2]))
        assert frame["prediction"] == 2
        received = []
        with pytest.raises(ConnectionClosed) as caught:
            async with asyncio.timeout(10):
                while True:
                    received.append(orjson.loads(await flooder.connection.recv()))
        assert caught.value.rcvd.code == status.WS_1008_POLICY_VIOLATION
        errors = [message for message in received if message["type"] == "error"]
        frames = [message for message in received if message["type"] == "frame"]
        assert {error["code"] for error in errors} == {"rate_limited"} and len(errors) == 21
        assert len(frames) < 100  # the bucket admitted 100 messages at least: they were folded into fewer frames
        assert await metric(url, "xai_rejected_messages_total", reason="rate_limited") == 21


async def test_frames_of_different_visitors_share_a_batch(golden_digits: dict[int, list[Stroke]]) -> None:
    # One worker and a generous wait: frames due together are computed together.
    async with running_app(workers=1, batch_wait_ms=50.0) as url:
        async with Visitor.connect(url) as a, Visitor.connect(url) as b, Visitor.connect(url) as c:
            for visitor in (a, b, c):
                await visitor.frame_for(None)
            visitors = {0: a, 4: b, 7: c}
            sent = {digit: await visitor.draw(golden_digits[digit]) for digit, visitor in visitors.items()}
            frames = await asyncio.gather(*(visitor.frame_for(sent[digit]) for digit, visitor in visitors.items()))
            assert [frame["prediction"] for frame in frames] == list(visitors)
            batches = await metric(url, "xai_inference_batch_size_count")
            singles = await metric(url, "xai_inference_batch_size_bucket", le="1.0")
            assert batches > singles, "every batch held a single frame"


class GatedEngine:
    """Test-only: the real engine, except that on-pause methods wait until the test opens the gate."""

    gate = threading.Event()

    def __init__(self, model: nn.Module, backend: str) -> None:
        self.engine = Engine(model, backend=backend)

    def explain(self, requests: Sequence[Request]) -> list[FrameData]:
        if any(METHODS[request.method].cost == "on-pause" for request in requests):
            if not self.gate.wait(timeout=30):
                raise TimeoutError("the test never opened the gate")
        return self.engine.explain(requests)


async def test_slow_methods_never_hold_every_worker(golden_digits: dict[int, list[Stroke]]) -> None:
    GatedEngine.gate.clear()
    async with running_app(engine_factory=GatedEngine, workers=2, pause_ms=0.0) as url:
        async with Visitor.connect(url) as slow_a, Visitor.connect(url) as slow_b, Visitor.connect(url) as quick:
            on_pause = next(m["name"] for m in slow_a.welcome["methods"] if m["cost"] == "on-pause")
            waiting = [await visitor.send("configure", method=on_pause) for visitor in (slow_a, slow_b)]
            frame = await quick.frame_for(await quick.draw(golden_digits[8]))  # while both slow jobs wait
            assert frame["prediction"] == 8
            GatedEngine.gate.set()
            for visitor, seq in zip((slow_a, slow_b), waiting):
                done = await visitor.frame_for(seq)
                assert done["method"] == on_pause and done["heatmap"] is not None
