"""The load generator: simulated visitors spread over client processes.

Each visitor holds one WebSocket, replays its :class:`~benchmarks.workload.Schedule`
in real time and measures, for every input message, the time from sending
it to receiving the first frame whose ``seq`` reflects it (docs/protocol.md:
frames are latest-wins, so one frame may answer several messages).

Visitors run as asyncio tasks on uvloop inside ``processes`` worker
processes, because one Python process cannot both send 60 messages/s for
hundreds of visitors and parse their frames.  All processes start measuring
at one instant of ``time.monotonic()``, which on Linux is CLOCK_MONOTONIC,
one clock for every process on the machine.
"""

import asyncio
import multiprocessing
import multiprocessing.connection
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from .targets import Probe, ProcessSample
from .workload import Pace, Schedule, Stroke, visitor_schedule

# A frame of the H=128 model is about 3.6 kB; leave room for larger models.
MAX_MESSAGE_BYTES = 4 * 2**20
# Connections opened at once per process: enough to connect 200 visitors in
# well under a second without a SYN burst larger than a listen backlog.
CONNECT_CONCURRENCY = 16
CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class LoadSpec:
    """One measurement step.

    url, origin: the WebSocket to open and the ``Origin`` header to send.
    visitors: simulated visitors, spread round-robin over ``processes``.
    duration_s: measuring window; messages are sent only inside it.
    drain_s: after the window, how long to wait for the last frames, s.
    connect_timeout_s: bound on opening one WebSocket and reading welcome + first frame.
    """

    url: str
    origin: str
    visitors: int
    processes: int
    duration_s: float
    drawings: tuple[tuple[Stroke, ...], ...]
    pace: Pace = Pace()
    drain_s: float = 2.0
    connect_timeout_s: float = 10.0
    seed: int = 0


@dataclass
class Tally:
    """What one client process observed (its visitors together)."""

    latency_ms: list[float] = field(default_factory=list)
    frame_latency_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)  # each frame's own compute_ms, as the server reports it
    tick_lag_ms: list[float] = field(default_factory=list)
    sent: int = 0
    frames: int = 0
    coalesced: int = 0
    unanswered: int = 0
    connected: int = 0
    errors: Counter = field(default_factory=Counter)


class Visitor:
    """One simulated visitor: a schedule, a socket, and the messages awaiting a frame."""

    def __init__(self, schedule: Schedule, phase_s: float) -> None:
        self.schedule = schedule
        self.phase_s = phase_s
        self.socket: ClientConnection | None = None
        self.hidden = 1
        self.seq = 0
        self.stroke_id = 0
        self.pending: deque[tuple[int, float]] = deque()
        self.drained = asyncio.Event()
        self.closing = False  # set once we close: how that close ends is not the server's doing

    async def open(self, url: str, origin: str, timeout_s: float) -> None:
        """Connect and read ``welcome`` and the first frame (raises on anything else)."""
        async with asyncio.timeout(timeout_s):
            # compression=None: the server refuses permessage-deflate (docs/protocol.md §Connection).
            self.socket = await connect(url, origin=origin, compression=None, ping_interval=None,
                                        max_size=MAX_MESSAGE_BYTES, close_timeout=CLOSE_TIMEOUT_S)
            welcome = orjson.loads(await self.socket.recv())
            if welcome.get("type") != "welcome":
                raise ValueError(f'expected a "welcome" message, got {welcome.get("type")!r}')
            self.hidden = int(welcome["model"]["hidden"])
            first = orjson.loads(await self.socket.recv())
            if first.get("type") != "frame":
                raise ValueError(f'expected the first "frame", got {first.get("type")!r}')

    def message(self, event_message: dict, new_stroke: bool) -> bytes:
        """The wire text of a scheduled message, with the next ``seq`` (and stroke id)."""
        self.seq += 1
        message = {**event_message, "seq": self.seq}
        if message["type"] == "stroke":
            # A visitor that starts mid-stroke begins a new stroke too.
            if new_stroke or self.stroke_id == 0:
                self.stroke_id += 1
            message["id"] = self.stroke_id
        elif message["type"] == "select" and message["hidden"] is not None:
            message["hidden"] %= self.hidden
        return orjson.dumps(message)

    async def send_until(self, start: float, stop: float, tally: Tally) -> None:
        """Send the schedule in real time from ``start`` (shifted by the phase) until ``stop``."""
        events, period = self.schedule.events, self.schedule.period_s
        index = next((i for i, event in enumerate(events) if event.at_s >= self.phase_s), 0)
        base = start - self.phase_s if index else start - self.phase_s + period
        for _ in range(int((stop - start) * 1000) + len(events)):  # bound: far above 1 event per ms
            due = base + events[index].at_s
            if due >= stop:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            tally.tick_lag_ms.append((now - due) * 1e3)
            text = self.message(events[index].message, events[index].new_stroke)
            self.pending.append((self.seq, now))
            self.drained.clear()
            await self.socket.send(text.decode())
            tally.sent += 1
            index += 1
            if index == len(events):
                index, base = 0, base + period

    def on_frame(self, seq: int, now: float, stop: float, tally: Tally, compute_ms: object = None) -> None:
        """Settle every pending message that the frame ``seq`` reflects (``compute_ms``: the frame's field)."""
        if now <= stop:
            tally.frames += 1
            if isinstance(compute_ms, (int, float)):
                tally.compute_ms.append(float(compute_ms))
        while self.pending and self.pending[0][0] <= seq:
            sent_seq, sent_at = self.pending.popleft()
            tally.latency_ms.append((now - sent_at) * 1e3)
            if sent_seq == seq:
                tally.frame_latency_ms.append((now - sent_at) * 1e3)
            else:
                tally.coalesced += 1
        if not self.pending:
            self.drained.set()

    def on_error(self, message: dict, tally: Tally) -> None:
        """A refused message gets no frame: count its code and stop waiting for it."""
        tally.errors[f"error:{message.get('code')}"] += 1
        self.pending = deque(item for item in self.pending if item[0] != message.get("seq"))
        if not self.pending:
            self.drained.set()

    async def receive(self, stop: float, tally: Tally) -> None:
        """Read frames until the socket closes; an unexpected close is counted as an error."""
        try:
            async for raw in self.socket:
                message = orjson.loads(raw)
                if message.get("type") == "frame" and isinstance(message.get("seq"), int):
                    self.on_frame(message["seq"], time.monotonic(), stop, tally, message.get("compute_ms"))
                elif message.get("type") == "error":
                    self.on_error(message, tally)
        except ConnectionClosed as closed:
            if not self.closing:
                tally.errors[f"close:{closed.rcvd.code if closed.rcvd else 1006}"] += 1
        self.drained.set()

    async def run(self, start: float, stop: float, drain_s: float, tally: Tally) -> None:
        """Send during [start, stop), wait up to ``drain_s`` for the last frames, close."""
        receiver = asyncio.create_task(self.receive(stop, tally))
        sender = asyncio.create_task(self.send_until(start, stop, tally))
        done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        if receiver in done:  # closed by the server: stop sending
            sender.cancel()
        try:
            await sender
        except (asyncio.CancelledError, ConnectionClosed):
            pass  # the close itself was counted by `receive`
        try:
            await asyncio.wait_for(self.drained.wait(), drain_s)
        except TimeoutError:
            pass  # what is still pending is counted below as unanswered
        tally.unanswered += len(self.pending)
        self.closing = True
        await self.socket.close()
        await receiver


async def open_visitors(visitors: Sequence[Visitor], spec: LoadSpec, tally: Tally) -> list[Visitor]:
    """Connect every visitor (a few at a time); failed ones are counted by reason and dropped."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(visitor: Visitor) -> Visitor | None:
        async with gate:
            try:
                await visitor.open(spec.url, spec.origin, spec.connect_timeout_s)
                return visitor
            except InvalidStatus as refused:
                tally.errors[f"connect:http {refused.response.status_code}"] += 1
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError) as failure:
                tally.errors[f"connect:{type(failure).__name__}"] += 1
            return None

    opened = [visitor for visitor in await asyncio.gather(*map(open_one, visitors)) if visitor]
    tally.connected = len(opened)
    return opened


def make_visitors(spec: LoadSpec, indices: Sequence[int]) -> list[Visitor]:
    """The visitors with global numbers ``indices``: own shuffled digits, own random phase."""
    visitors = []
    for index in indices:
        schedule = visitor_schedule(spec.drawings, spec.pace, seed=spec.seed * 100_003 + index)
        phase = float(np.random.default_rng(index).uniform(0.0, schedule.period_s))
        visitors.append(Visitor(schedule, phase))
    return visitors


async def client_process(spec: LoadSpec, indices: Sequence[int], pipe: multiprocessing.connection.Connection) -> None:
    """One client process: connect, report ready, wait for the start time, measure, report."""
    tally = Tally()
    visitors = await open_visitors(make_visitors(spec, indices), spec, tally)
    pipe.send(("ready", tally.connected))
    ready = await asyncio.to_thread(pipe.poll, spec.connect_timeout_s + 30.0)
    if not ready:
        raise TimeoutError("the benchmark never sent the start time")
    start, stop = pipe.recv()
    cpu_before = time.process_time()
    await asyncio.gather(*(visitor.run(start, stop, spec.drain_s, tally) for visitor in visitors))
    pipe.send(("done", tally_dict(tally, time.process_time() - cpu_before)))


def tally_dict(tally: Tally, cpu_s: float) -> dict:
    """A picklable summary: arrays as float32 numpy, counters as dicts."""
    return {
        "latency_ms": np.asarray(tally.latency_ms, dtype=np.float32),
        "frame_latency_ms": np.asarray(tally.frame_latency_ms, dtype=np.float32),
        "tick_lag_ms": np.asarray(tally.tick_lag_ms, dtype=np.float32),
        "compute_ms": np.asarray(tally.compute_ms, dtype=np.float32),
        "sent": tally.sent, "frames": tally.frames, "coalesced": tally.coalesced,
        "unanswered": tally.unanswered, "connected": tally.connected,
        "errors": dict(tally.errors), "cpu_s": cpu_s,
    }


def process_entry(spec: LoadSpec, indices: list[int], pipe: multiprocessing.connection.Connection) -> None:
    """Entry point of a client process (spawned, so nothing of the parent is inherited)."""
    uvloop.run(client_process(spec, indices, pipe))


def _expect(pipe: multiprocessing.connection.Connection, kind: str, timeout_s: float) -> object:
    """The payload of the next ``(kind, payload)`` from a client process, within ``timeout_s``."""
    if not pipe.poll(timeout_s):
        raise TimeoutError(f"a client process sent no {kind!r} within {timeout_s:.0f} s")
    received, payload = pipe.recv()  # EOFError here means the process died: let it propagate
    if received != kind:
        raise RuntimeError(f"expected {kind!r} from a client process, got {received!r}")
    return payload


@dataclass(frozen=True)
class Observation:
    """A step's raw observations: merged client tallies and server samples around the window."""

    tallies: list[dict]
    server_before: ProcessSample | None
    server_after: ProcessSample | None
    wall_s: float


def run_load(spec: LoadSpec, probe: Probe) -> Observation:
    """Run one step: spawn the client processes, measure for ``spec.duration_s``, collect.

    ``probe`` samples the server (CPU, memory) at the window's start and end.
    Every wait is bounded; client processes still alive at the end are killed.
    """
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for number in range(min(spec.processes, spec.visitors)):
        indices = list(range(number, spec.visitors, spec.processes))
        parent_end, child_end = context.Pipe()
        process = context.Process(target=process_entry, args=(spec, indices, child_end), daemon=True)
        process.start()
        child_end.close()
        pipes.append(parent_end)
        processes.append(process)
    try:
        # spawn re-imports numpy, websockets, uvloop: allow for that beside connecting.
        for pipe in pipes:
            _expect(pipe, "ready", spec.connect_timeout_s + 30.0)
        start = time.monotonic() + 0.2
        stop = start + spec.duration_s
        for pipe in pipes:
            pipe.send((start, stop))
        time.sleep(max(0.0, start - time.monotonic()))
        before = probe()
        time.sleep(max(0.0, stop - time.monotonic()))
        after = probe()
        limit_s = spec.drain_s + 2 * CLOSE_TIMEOUT_S + 30.0
        tallies = [_expect(pipe, "done", limit_s) for pipe in pipes]
    finally:
        for process in processes:
            process.join(timeout=5.0)
            if process.is_alive():
                process.kill()
                process.join()
    return Observation(tallies, before, after, stop - start)
