"""A replica of several server processes on one socket: visitors on each, metrics summed, 1012 from each."""

import asyncio
import signal
import time
from contextlib import AsyncExitStack

import orjson
from starlette import status
from test_server_failures import closing_code

from model_store.strokes import Stroke
from support import ServerProcess, Visitor, fetch, metric, server_process

PROCESSES = 2
MAX_VISITORS = 40  # connections opened until every process holds one; each lands on any process


def connected_pids(server: ServerProcess) -> list[int]:
    """The server process of each ``visitor_connected`` event so far, in order."""
    return [orjson.loads(line)["pid"] for line in list(server.lines) if '"event":"visitor_connected"' in line]


async def visitors_on_every_process(server: ServerProcess, stack: AsyncExitStack) -> list[Visitor]:
    """Open visitors (each waits for its first frame) until every server process has at least one."""
    workers = {orjson.loads(line)["pid"] for line in list(server.lines) if '"event":"server_ready"' in line}
    assert len(workers) == PROCESSES, f"{len(workers)} server processes reported ready"
    visitors = []
    while set(connected_pids(server)) != workers:
        assert len(visitors) < MAX_VISITORS, f"{MAX_VISITORS} visitors all landed on {set(connected_pids(server))}"
        batch = [await stack.enter_async_context(Visitor.connect(server.url)) for _ in range(4)]
        for visitor in batch:
            await visitor.frame_for(None)
        visitors += batch
    return visitors


async def test_visitors_land_on_every_process_and_metrics_sum_over_them(
        golden_digits: dict[int, list[Stroke]]) -> None:
    with server_process({"PROCESSES": str(PROCESSES)}) as server:
        assert (await fetch(server.url + "/readyz"))[1].startswith(f"{PROCESSES} server processes ready".encode())
        async with AsyncExitStack() as stack:
            visitors = await visitors_on_every_process(server, stack)
            for visitor in visitors:  # each process computes real frames
                assert (await visitor.frame_for(await visitor.draw(golden_digits[4])))["prediction"] == 4
            # Whichever process answers, it counts every process's visitors.
            for _ in range(4):
                assert await metric(server.url, "xai_open_connections") == len(visitors)
            frames = await metric(server.url, "xai_frames_sent_total")
            assert frames >= 2 * len(visitors)
        async with asyncio.timeout(10):
            while await metric(server.url, "xai_closed_connections_total", code="1000") != len(visitors):
                await asyncio.sleep(0.05)
        assert await metric(server.url, "xai_open_connections") == 0


async def test_sigterm_closes_visitors_of_every_process_1012_within_grace() -> None:
    grace_s = 3.0
    with server_process({"PROCESSES": str(PROCESSES), "SHUTDOWN_GRACE_S": str(grace_s)}) as server:
        async with AsyncExitStack() as stack:
            visitors = await visitors_on_every_process(server, stack)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            codes = await asyncio.gather(*(closing_code(visitor) for visitor in visitors))
        assert codes == [status.WS_1012_SERVICE_RESTART] * len(visitors)
        returncode = await asyncio.to_thread(server.process.wait, grace_s + 5)
        elapsed = time.monotonic() - signalled
    assert returncode == 0  # the supervisor exits normally once its processes have
    assert elapsed < grace_s + 1, f"exited {elapsed:.1f} s after SIGTERM"
    assert "Traceback" not in server.log()
