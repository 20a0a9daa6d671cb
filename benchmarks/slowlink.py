"""A slow link on loopback, and the benchmark that draws through it.

:class:`SlowLink` is a TCP proxy on 127.0.0.1 that forwards each connection
to the server only as fast as a mobile link would: every direction of every
connection is its own link of ``rate_bps`` bits per second (bytes wait in a
FIFO for their turn, as in a radio's queue) and arrives ``rtt_s / 2`` after
it went through.  The link's queue holds at most ``buffer_bytes``; beyond it
the proxy stops reading, and TCP's back-pressure fills the kernel buffers in
front of it, as a real bottleneck does.

``python -m benchmarks.slowlink`` starts the server on loopback and, for each
link (1.5, 5 and 20 Mbit/s, 150 ms round trip), lets N visitors draw real
digits at a 60 Hz pointer rate through their own link, twice in the same
run: clients that acknowledge each frame (flow control, docs/protocol.md
"ack") and clients that never do (``--flow-control off``: every earlier
client), and, with ``--before DIR``, the server of another checkout (e.g.
``git worktree add DIR HEAD~1``) with clients that do not acknowledge.  It
reports, per arm:

- **pen-up → frame lag**: from sending a stroke's last message to receiving
  the first frame that reflects it (p50/p99, ms);
- **display lag** while drawing: the same for every message;
- **frames/s** per visitor while drawing, and **bytes per frame**.

``--json`` prints every figure as one JSON object.  Latency figures are
noisy on a shared machine: compare the arms of one run.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
from websockets.asyncio.client import ClientConnection, connect

from .targets import KINDS, LocalServer
from .workload import Pace, Stroke, load_drawings, visitor_schedule

CHUNK_BYTES = 1460  # one TCP segment's payload on Ethernet: the link's unit of transmission
DEFAULT_BUFFER_BYTES = 64 * 1024
LINKS_MBPS = (1.5, 5.0, 20.0)
MAX_MESSAGE_BYTES = 4 * 2**20
OPEN_TIMEOUT_S = 30.0


class SlowLink:
    """A loopback TCP proxy to ``target`` (host, port) with a rate and a delay per direction and connection.

    Use ``async with SlowLink(...) as link:`` and connect to ``link.port``.
    """

    def __init__(self, target: tuple[str, int], rate_bps: float, rtt_s: float,
                 buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        self.target = target
        self.rate_bps = rate_bps
        self.one_way_s = rtt_s / 2
        self.buffer_bytes = buffer_bytes
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "SlowLink":
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        for pipe in list(self.pipes):
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await self.server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self.target)
        pipes = [asyncio.create_task(self._pipe(client_reader, server_writer)),
                 asyncio.create_task(self._pipe(server_reader, client_writer))]
        self.pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self.pipes.difference_update(pipes)
            for writer in (client_writer, server_writer):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: read, wait for the link, deliver one way-delay later; EOF is forwarded."""
        loop = asyncio.get_running_loop()
        in_transit: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        queued = Queued(self.buffer_bytes)
        deliver = asyncio.create_task(self._deliver(in_transit, writer, queued))
        link_free_at = loop.time()
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                await queued.room()
                now = loop.time()
                link_free_at = max(now, link_free_at) + len(chunk) * 8 / self.rate_bps
                queued.add(len(chunk))
                in_transit.put_nowait((link_free_at + self.one_way_s, chunk))
            in_transit.put_nowait((link_free_at + self.one_way_s, b""))
            await deliver
        finally:
            deliver.cancel()

    @staticmethod
    async def _deliver(in_transit: "asyncio.Queue[tuple[float, bytes]]", writer: asyncio.StreamWriter,
                       queued: "Queued") -> None:
        loop = asyncio.get_running_loop()
        while True:
            at, chunk = await in_transit.get()
            await asyncio.sleep(max(0.0, at - loop.time()))
            if not chunk:
                writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()
            queued.remove(len(chunk))


class Queued:
    """Bytes in a link's queue and in flight, bounded: :meth:`room` waits while the queue is full."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.bytes = 0
        self.changed = asyncio.Event()

    def add(self, count: int) -> None:
        self.bytes += count

    def remove(self, count: int) -> None:
        self.bytes -= count
        self.changed.set()

    async def room(self) -> None:
        while self.bytes >= self.limit_bytes:
            self.changed.clear()
            await self.changed.wait()


@dataclass
class Observation:
    """What one visitor saw: per message the lag to its frame (s), per frame its size and arrival."""

    lags_s: list[float] = field(default_factory=list)
    pen_up_lags_s: list[float] = field(default_factory=list)
    unanswered: int = 0
    frame_bytes: list[int] = field(default_factory=list)
    frames_while_drawing: int = 0
    drawing_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class DrawingVisitor:
    """A visitor that draws ``strokes`` at the pace of ``pace`` and, if ``ack``, acknowledges every frame."""

    def __init__(self, connection: ClientConnection, ack: bool) -> None:
        self.connection = connection
        self.ack = ack
        self.seq = 0
        self.sent_at: dict[int, float] = {}
        self.pen_ups: set[int] = set()
        self.answered_through = 0
        self.observation = Observation()
        self.drawing_until = float("inf")
        self.answered = asyncio.Event()

    async def receive(self) -> None:
        """Read frames until the connection ends: match each to the messages it answers, ack it."""
        async for text in self.connection:
            now = time.monotonic()
            message = orjson.loads(text)
            if message["type"] == "error":
                self.observation.errors.append(message["code"])
            if message["type"] != "frame":
                continue
            self.observation.frame_bytes.append(len(text.encode() if isinstance(text, str) else text))
            if now <= self.drawing_until:
                self.observation.frames_while_drawing += 1
            if self.ack and "frame" in message:
                await self.connection.send(orjson.dumps({"type": "ack", "frame": message["frame"]}).decode())
            self._answer(message["seq"] or 0, now)

    def _answer(self, seq: int, now: float) -> None:
        for answered in range(self.answered_through + 1, seq + 1):
            sent = self.sent_at.pop(answered, None)
            if sent is None:
                continue
            self.observation.lags_s.append(now - sent)
            if answered in self.pen_ups:
                self.observation.pen_up_lags_s.append(now - sent)
        self.answered_through = max(self.answered_through, seq)
        if not self.sent_at:
            self.answered.set()

    async def send(self, message: dict, pen_up: bool) -> None:
        self.seq += 1
        self.sent_at[self.seq] = time.monotonic()
        if pen_up:
            self.pen_ups.add(self.seq)
        self.answered.clear()
        await self.connection.send(orjson.dumps({**message, "seq": self.seq}).decode())


async def draw(visitor: DrawingVisitor, drawings: Sequence[Sequence[Stroke]], seconds: float, seed: int) -> None:
    """Send ``seconds`` of real digits at a 60 Hz pointer rate (benchmarks/workload.py), in real time."""
    events = visitor_schedule(drawings, Pace(select_probability=0.0), seed).events
    stroke_id = 0
    start = time.monotonic()
    visitor.drawing_until = start + seconds
    for index, event in enumerate(events):
        if event.at_s >= seconds:
            break
        await asyncio.sleep(max(0.0, start + event.at_s - time.monotonic()))
        message = dict(event.message)
        if message["type"] == "stroke":
            stroke_id += event.new_stroke or stroke_id == 0
            message["id"] = stroke_id
        following = events[index + 1] if index + 1 < len(events) else None
        pen_up = message["type"] == "stroke" and (following is None or following.message["type"] != "stroke"
                                                   or following.new_stroke)
        await visitor.send(message, pen_up)
    visitor.observation.drawing_s = time.monotonic() - start


async def run_visitor(url: str, origin: str, ack: bool, drawings: Sequence[Sequence[Stroke]], seconds: float,
                      drain_s: float, seed: int) -> Observation:
    """One visitor through ``url``: connect, draw for ``seconds``, wait up to ``drain_s`` for the last frame."""
    async with connect(url, origin=origin, compression=None, max_size=MAX_MESSAGE_BYTES,
                       open_timeout=OPEN_TIMEOUT_S, ping_interval=None) as connection:
        visitor = DrawingVisitor(connection, ack)
        receiving = asyncio.create_task(visitor.receive())
        try:
            await draw(visitor, drawings, seconds, seed)
            try:
                async with asyncio.timeout(drain_s):
                    await visitor.answered.wait()
            except TimeoutError:
                visitor.observation.unanswered = len(visitor.sent_at)  # counted, and reported as such
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
    return visitor.observation


def percentile_ms(values: Sequence[float], unanswered: int, q: float) -> float | None:
    """The ``q``-th percentile in ms, counting unanswered messages as infinitely late (``None`` if it is one)."""
    if not values and not unanswered:
        return None
    ordered = np.sort(np.concatenate([np.asarray(values, dtype=np.float64), np.full(unanswered, np.inf)]))
    value = float(ordered[min(len(ordered) - 1, int(np.ceil(q / 100 * len(ordered))) - 1)])
    return None if not np.isfinite(value) else round(value * 1000, 1)


def summarise(observations: Sequence[Observation]) -> dict:
    """The arm's figures over all its visitors."""
    lags = [lag for seen in observations for lag in seen.lags_s]
    pen_ups = [lag for seen in observations for lag in seen.pen_up_lags_s]
    unanswered = sum(seen.unanswered for seen in observations)
    sizes = [size for seen in observations for size in seen.frame_bytes]
    return {
        "pen_up_lag_ms": {"p50": percentile_ms(pen_ups, 0, 50), "p99": percentile_ms(pen_ups, 0, 99),
                          "max": percentile_ms(pen_ups, 0, 100), "count": len(pen_ups)},
        "display_lag_ms": {"p50": percentile_ms(lags, unanswered, 50), "p99": percentile_ms(lags, unanswered, 99)},
        "unanswered": unanswered,
        "frames_per_s": round(float(np.mean([seen.frames_while_drawing / seen.drawing_s
                                             for seen in observations])), 1),
        "bytes_per_frame": round(float(np.mean(sizes)), 1) if sizes else None,
        "max_bytes_per_frame": max(sizes, default=None),
        "errors": sorted({code for seen in observations for code in seen.errors}),
    }


async def measure_link(server: LocalServer, rate_mbps: float, rtt_s: float, visitors: int, ack: bool,
                       drawings: Sequence[Sequence[Stroke]], seconds: float, drain_s: float) -> dict:
    """``visitors`` visitors, each through its own link of ``rate_mbps`` and ``rtt_s``."""
    async with SlowLink(("127.0.0.1", server.port), rate_mbps * 1e6, rtt_s) as link:
        url = f"ws://127.0.0.1:{link.port}/ws"
        observations = await asyncio.gather(*(run_visitor(url, server.origin, ack, drawings, seconds, drain_s, seed)
                                              for seed in range(visitors)))
    return {"link_mbps": rate_mbps, "rtt_ms": round(rtt_s * 1000), "visitors": visitors, **summarise(observations)}


async def run(args: argparse.Namespace) -> dict:
    drawings, source = load_drawings(args.drawings)
    results = []
    with contextlib.ExitStack() as servers:
        ours = servers.enter_context(LocalServer(KINDS["server"], args.model, {}))
        # (arm, server, whether its clients acknowledge frames)
        arms = [(arm, ours, arm == "on") for arm in args.flow_control]
        if args.before is not None:
            before = servers.enter_context(LocalServer(KINDS["server"], args.model, {}, repo=args.before))
            arms.append(("before", before, False))
        for rate in args.links:
            for arm, server, ack in arms:
                result = await measure_link(server, rate, args.rtt_ms / 1000, args.visitors, ack, drawings,
                                            args.seconds, args.drain_s)
                results.append({"flow_control": arm, **result})
                print(format_row(results[-1]), file=sys.stderr)
    return {"source": source, "seconds": args.seconds, "before": str(args.before) if args.before else None,
            "results": results}


def cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


def format_row(result: dict) -> str:
    pen_up, display = result["pen_up_lag_ms"], result["display_lag_ms"]
    return (f"{result['link_mbps']:>5g} Mbit/s {result['rtt_ms']:>4} ms  flow control {result['flow_control']:<6}  "
            f"pen-up lag p50 {cell(pen_up['p50']):>7} p99 {cell(pen_up['p99']):>7} ms  "
            f"display lag p50 {cell(display['p50']):>7} p99 {cell(display['p99']):>7} ms  "
            f"{result['frames_per_s']:>5g} frames/s  {cell(result['bytes_per_frame']):>7} B/frame"
            + (f"  unanswered {result['unanswered']}" if result["unanswered"] else ""))


def format_markdown(report: dict) -> str:
    lines = ["| link | flow control | pen-up → frame lag p50 / p99 (ms) | display lag p50 / p99 (ms) | "
             "frames/s while drawing | bytes/frame |", "|---|---|---|---|---|---|"]
    for result in report["results"]:
        pen_up, display = result["pen_up_lag_ms"], result["display_lag_ms"]
        lines.append(f"| {result['link_mbps']:g} Mbit/s, {result['rtt_ms']} ms | {result['flow_control']} | "
                     f"{cell(pen_up['p50'])} / {cell(pen_up['p99'])} | {cell(display['p50'])} / "
                     f"{cell(display['p99'])} | {result['frames_per_s']:g} | {cell(result['bytes_per_frame'])} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--links", type=float, nargs="+", default=list(LINKS_MBPS), help="link rates, Mbit/s")
    parser.add_argument("--rtt-ms", type=float, default=150.0, help="round trip added by the link, ms")
    parser.add_argument("--visitors", type=int, default=4, help="visitors per link, each on its own link")
    parser.add_argument("--seconds", type=float, default=8.0, help="drawing time per visitor and arm, s")
    parser.add_argument("--drain-s", type=float, default=60.0, help="wait for the last frame at most this, s")
    parser.add_argument("--drawings", type=int, default=10, help="distinct digits drawn")
    parser.add_argument("--model", default=None, help="model name (default: the store's default)")
    parser.add_argument("--flow-control", nargs="+", choices=("on", "off"), default=["on", "off"],
                        help="on: clients acknowledge frames; off: they never do (earlier clients)")
    parser.add_argument("--before", type=Path, default=None,
                        help="also measure the server of this checkout (e.g. a git worktree of the previous "
                             "commit), its clients not acknowledging: the arm 'before'")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    report = asyncio.run(run(args))
    print(json.dumps(report, indent=2) if args.json else format_markdown(report))


if __name__ == "__main__":
    main()
