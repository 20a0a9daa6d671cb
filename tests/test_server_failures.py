"""Failures: an inference exception costs one visitor its socket (1011); SIGTERM closes everyone with 1012."""

import asyncio
import functools
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from starlette import status
from torch import nn
from websockets.exceptions import ConnectionClosed

from model_store.strokes import Stroke
from server.explain.engine import Engine, FrameData, Request
from server.raster import rasterize
from support import Visitor, decode_array, fetch, metric, running_app, server_process

FAILING_NEURON = 13


class FailingEngine:
    """Test-only fault injection: the real engine, except that selecting hidden neuron 13 raises."""

    def __init__(self, model: nn.Module, backend: str) -> None:
        self.engine = Engine(model, backend=backend)

    def explain(self, requests: Sequence[Request]) -> list[FrameData]:
        if any(request.selection.hidden == FAILING_NEURON for request in requests):
            raise RuntimeError("injected inference failure")
        return self.engine.explain(requests)


class DyingEngine:
    """Test-only: the real engine, except that selecting hidden neuron 13 ends the (engine) process."""

    def __init__(self, model: nn.Module, backend: str) -> None:
        self.engine = Engine(model, backend=backend)

    def explain(self, requests: Sequence[Request]) -> list[FrameData]:
        if any(request.selection.hidden == FAILING_NEURON for request in requests):
            os._exit(1)
        return self.engine.explain(requests)


class DyingForGoodEngine(DyingEngine):
    """Test-only: a :class:`DyingEngine` after whose death no engine can be built (``marker`` says so)."""

    def __init__(self, model: nn.Module, backend: str, marker: Path) -> None:
        if marker.exists():
            raise RuntimeError("injected start failure")
        super().__init__(model, backend)
        self.marker = marker

    def explain(self, requests: Sequence[Request]) -> list[FrameData]:
        if any(request.selection.hidden == FAILING_NEURON for request in requests):
            self.marker.touch()
        return super().explain(requests)


async def closing_code(visitor: Visitor) -> int:
    try:
        async with asyncio.timeout(10):
            while True:
                await visitor.connection.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "dropped without a close frame"
        return closed.rcvd.code


async def test_inference_exception_closes_only_that_visitor_1011(golden_digits: dict[int, list[Stroke]]) -> None:
    # One worker and a wait long enough that both visitors' frames land in one batch, which then fails.
    async with running_app(engine_factory=FailingEngine, workers=1, batch_wait_ms=50.0) as url:
        async with Visitor.connect(url) as failing, Visitor.connect(url) as bystander:
            await failing.frame_for(None)
            await bystander.frame_for(None)
            await failing.send("select", output=None, hidden=FAILING_NEURON)
            seq = await bystander.draw(golden_digits[5])
            assert await closing_code(failing) == status.WS_1011_INTERNAL_ERROR
            frame = await bystander.frame_for(seq)
            assert frame["prediction"] == 5
            np.testing.assert_allclose(decode_array(frame["input"]), rasterize(golden_digits[5]),
                                       rtol=0, atol=0.5 / 255 + 1e-6)
        async with Visitor.connect(url) as reconnected:  # reconnecting is safe
            assert (await reconnected.frame_for(await reconnected.draw(golden_digits[5])))["prediction"] == 5
        assert await metric(url, "xai_closed_connections_total", code="1011") == 1


async def test_sigterm_closes_every_visitor_1012_and_exits_within_grace(
        golden_digits: dict[int, list[Stroke]]) -> None:
    grace_s = 3.0
    with server_process({"SHUTDOWN_GRACE_S": str(grace_s)}) as server:
        async with Visitor.connect(server.url) as drawing, Visitor.connect(server.url) as idle:
            await drawing.frame_for(await drawing.draw(golden_digits[1]))
            await idle.frame_for(None)
            await drawing.send("compare", methods=["lrp", "saliency"])
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(closing_code(drawing), closing_code(idle))
        assert codes == [status.WS_1012_SERVICE_RESTART] * 2
        returncode = await asyncio.to_thread(server.process.wait, grace_s + 5)
        elapsed = time.monotonic() - signalled
    assert returncode == -signal.SIGTERM  # uvicorn re-raises the signal it handled
    assert elapsed < grace_s, f"exited {elapsed:.1f} s after SIGTERM"
    assert "Traceback" not in server.log()


async def test_engine_processes_serve_frames_and_a_dead_one_costs_one_visitor(
        golden_digits: dict[int, list[Stroke]]) -> None:
    # ENGINE_PROCESSES: per-frame batches in child processes; one dies mid-batch and is replaced.
    async with running_app(engine_factory=DyingEngine, engine_processes=True, workers=1) as url:
        async with Visitor.connect(url) as dying, Visitor.connect(url) as bystander:
            frame = await bystander.frame_for(await bystander.draw(golden_digits[3]))
            assert frame["prediction"] == 3
            np.testing.assert_allclose(decode_array(frame["input"]), rasterize(golden_digits[3]),
                                       rtol=0, atol=0.5 / 255 + 1e-6)
            await dying.frame_for(None)
            await dying.send("select", output=None, hidden=FAILING_NEURON)
            assert await closing_code(dying) == status.WS_1011_INTERNAL_ERROR
            await bystander.send("clear")
            frame = await bystander.frame_for(await bystander.draw(golden_digits[6]))  # on the new child
            assert frame["prediction"] == 6
        assert await metric(url, "xai_closed_connections_total", code="1011") == 1


async def test_when_no_engine_process_can_restart_visitors_hear_1011_and_readyz_says_so(
        golden_digits: dict[int, list[Stroke]], tmp_path: Path) -> None:
    # The only child dies and its replacement cannot start: nobody may wait for a child that will never come.
    factory = functools.partial(DyingForGoodEngine, marker=tmp_path / "engines-broken")
    async with running_app(engine_factory=factory, engine_processes=True, workers=1) as url:
        async with Visitor.connect(url) as dying, Visitor.connect(url) as bystander:
            assert (await bystander.frame_for(await bystander.draw(golden_digits[3])))["prediction"] == 3
            await dying.frame_for(None)
            await dying.send("select", output=None, hidden=FAILING_NEURON)
            assert await closing_code(dying) == status.WS_1011_INTERNAL_ERROR
            await bystander.send("clear")
            assert await closing_code(bystander) == status.WS_1011_INTERNAL_ERROR
        code, body = await fetch(url + "/readyz")
        assert code == 503 and b"none could be restarted" in body
