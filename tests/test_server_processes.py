"""A replica of several server processes on one socket: visitors on each, metrics summed, 1012 from each."""

import asyncio
import os
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path

import orjson
from starlette import status
from test_server_failures import closing_code
from websockets.exceptions import ConnectionClosed

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


FAULTS_DIR = Path(__file__).resolve().parent / "faults"  # sitecustomize: hidden neuron 13 hangs its engine call
HANGING_NEURON = 13
HANG_DEADLINE_S = 1.0
MAX_HANGS = 24  # hanging visitors sent until every first server process has ended; each lands on any process


def ready_pids(server: ServerProcess) -> set[int]:
    return {orjson.loads(line)["pid"] for line in list(server.lines) if '"event":"server_ready"' in line}


def exhausted_pids(server: ServerProcess) -> set[int]:
    return {orjson.loads(line)["pid"] for line in list(server.lines)
            if '"event":"engine_threads_exhausted"' in line}


async def hang_one_engine_thread(url: str) -> None:
    """A visitor whose frame hangs its engine thread; it is closed 1011 (or 1012, if its process is ending).

    A process that has just lost its last thread refuses it with 1013 (not ready) before its status file,
    rewritten every second, turns ``/readyz`` red: then nothing hangs.
    """
    try:
        async with Visitor.connect(url) as hanging:
            await hanging.frame_for(None)
            await hanging.send("select", output=None, hidden=HANGING_NEURON)
            assert await closing_code(hanging) in (status.WS_1011_INTERNAL_ERROR, status.WS_1012_SERVICE_RESTART)
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == status.WS_1013_TRY_AGAIN_LATER, closed


async def wait_until_ready(server: ServerProcess, timeout_s: float = 120.0) -> None:
    """Until ``/readyz`` is 200: every process of the replica up, ready and healthy (a new visitor is served)."""
    deadline = time.monotonic() + timeout_s
    while not await answers_ready(server):
        assert time.monotonic() < deadline, server.log()[-3000:]
        await asyncio.sleep(0.2)


async def answers_ready(server: ServerProcess) -> bool:
    """Whether ``/readyz`` says 200 now; a request that times out (a process still starting on a loaded
    machine, its socket accepted by the kernel but not yet served) is a "not yet", not a failure."""
    try:
        return (await fetch(server.url + "/readyz"))[0] == 200
    except TimeoutError:
        return False


async def test_a_process_with_every_engine_thread_hung_is_replaced_and_the_replica_serves_again(
        golden_digits: dict[int, list[Stroke]]) -> None:
    # Issue 29.2: with WORKERS=1 a third hang left no thread; health stayed 503 and every visitor got 1011
    # for good. Now each process with no thread left exits and uvicorn's supervisor starts a fresh one.
    env = {"PROCESSES": str(PROCESSES), "WORKERS": "1", "COMPUTE_DEADLINE_S": str(HANG_DEADLINE_S),
           "PYTHONPATH": f"{FAULTS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with server_process(env) as server:
        first = ready_pids(server)
        assert len(first) == PROCESSES
        for _ in range(MAX_HANGS):  # three hangs empty a process's pool (two are replaced)
            if first <= exhausted_pids(server):
                break
            await wait_until_ready(server)  # a replica with a process starting refuses newcomers (1013)
            await hang_one_engine_thread(server.url)
        assert first <= exhausted_pids(server), f"{MAX_HANGS} hangs did not reach every process"
        # Each ended itself and a fresh one took its place: the replica is ready and serves frames again.
        await wait_until_ready(server)
        # At least one fresh process per original (a hang meant for an original may exhaust a fresh one too).
        assert len(ready_pids(server) - first) >= PROCESSES
        for digit in (3, 8):
            async with Visitor.connect(server.url) as visitor:
                assert (await visitor.frame_for(await visitor.draw(golden_digits[digit])))["prediction"] == digit
        assert server.process.poll() is None  # the replica itself never stopped
        assert "Traceback" not in server.log()
