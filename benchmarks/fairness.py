"""Fair share: how much visitors doing the worst allowed thing slow a drawing bystander (issue 14.2).

``python -m benchmarks.fairness`` starts our server on loopback, then measures
a *bystander* drawing real digits without pause (a stroke message of 2 points
every 1/60 s) in one run alone (the baseline) and beside ``--abusers``
visitors doing the worst the limits allow, in alternating windows:

* ``zigzag``: a 4,096-point zig-zag from corner to corner (8 messages of 512
  points), then ``select`` messages at ``--rate`` per second, each asking for
  a new frame of that drawing;
* ``rescale``: a 4,032-point zig-zag inside (0.1, 0.1)–(0.9, 0.9), then a
  one-point stroke at (0, 0), ``undo``, again, at ``--rate`` per second: each
  message changes the drawing's bounding box, so no frame can reuse the
  cached canvas and each draws all 4,033 points again;
* the slow-lane floods (issue 29.1): a real digit drawn, then at ``--rate``
  per second ``sanity`` requests (method KernelSHAP, the costliest: three
  maps each), ``compare`` requests (LIME and KernelSHAP), ``counterfactual``
  requests (target cycling 0–9), ``onpause`` (method KernelSHAP and a
  ``select`` each time: every frame of a still drawing computes the on-pause
  map), or ``questions`` (the four, in turn).  Each flooder reads its
  answers, and how many came back is reported (``abuser_answers_per_s``).

Latency is per bystander message, from sending it to the first frame that
reflects it (as in :mod:`benchmarks.latency`).  With ``--control``, a second
server of the same kind, which no abuser visits, has a *control* bystander
drawing the same digits in the same windows: the host's stalls reach both
bystanders at once, so ``excess_ratio`` (the bystander's p99 ratio divided by
the control's) keeps what the abusers cost and cancels most of what a busy
host costs, which a sequential alone/beside comparison cannot.  Frame rates are frames per
second received by the bystander and, on average, by each abuser.
"""

import argparse
import asyncio
import itertools
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .targets import KINDS, REPO, LocalServer
from .workload import load_drawings

MODES = ("zigzag", "rescale", "sanity", "compare", "counterfactual", "onpause", "questions")
FLOODS = ("sanity", "compare", "counterfactual", "onpause")
SLOW_METHOD = "kernel_shap"
ANSWERS = {"sanity", "comparison", "counterfactual"}  # the slow lane's answers (onpause: frames)
MAX_POINTS_PER_MESSAGE = 512


@dataclass(frozen=True)
class Phase:
    """Measuring windows pooled: the bystander's latency percentiles (ms) and the frame rates seen."""

    p50_ms: float
    p99_ms: float
    bystander_fps: float
    abuser_fps: float | None
    abuser_answers_per_s: float | None = None
    control_p99_ms: float | None = None  # the control bystander's, on a server no abuser visits


@dataclass
class Window:
    """What one measuring window saw: bystander latencies (unanswered: +inf), frames, seconds."""

    latency_ms: list[float]
    bystander_frames: int
    abuser_frames: list[int]
    elapsed_s: float
    abuser_answers: list[int] = field(default_factory=list)
    control_latency_ms: list[float] = field(default_factory=list)


def zigzag(points: int, low: float, high: float) -> list[list[float]]:
    """``points`` points alternating between the corners (low, low) and (high, high)."""
    return [[low, low] if index % 2 == 0 else [high, high] for index in range(points)]


class Client:
    """One WebSocket speaking protocol v1, numbering its messages, counting frames and their latency."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.seq = 0
        self.frames = 0
        self.answers = 0  # sanity, comparison and counterfactual messages received
        self.sent: dict[int, float] = {}  # seq → send time, of messages whose latency is measured
        self.latency_ms: list[float] = []

    async def send(self, message: dict, measured: bool = False) -> None:
        self.seq += 1
        if measured:
            self.sent[self.seq] = time.monotonic()
        await self.socket.send(orjson.dumps({**message, "seq": self.seq}).decode())

    async def receive(self) -> None:
        async for raw in self.socket:
            message = orjson.loads(raw)
            self.answers += message["type"] in ANSWERS
            if message["type"] != "frame" or message["seq"] is None:
                continue
            self.frames += 1
            now = time.monotonic()
            for seq in [seq for seq in self.sent if seq <= message["seq"]]:
                self.latency_ms.append((now - self.sent.pop(seq)) * 1e3)


async def open_client(url: str, origin: str) -> Client:
    socket = await connect(url, origin=origin, compression=None, max_size=2**22)
    await socket.recv()  # welcome
    return Client(socket)


async def bystander_draws(client: Client, strokes: Sequence[Sequence[Sequence[float]]], stop: float) -> None:
    """Real digits, stroke after stroke, 2 points per message at 60 Hz; a new digit every cycle."""
    stroke_ids = itertools.count()
    while time.monotonic() < stop:
        await client.send({"type": "clear"})
        for stroke in strokes:
            stroke_id = next(stroke_ids)
            for start in range(0, len(stroke), 2):
                if time.monotonic() >= stop:
                    return
                points = [list(point) for point in stroke[start:start + 2]]
                await client.send({"type": "stroke", "id": stroke_id, "points": points}, measured=True)
                await asyncio.sleep(1 / 60)


def flood_request(mode: str, index: int) -> dict:
    """The ``index``-th request of a slow-lane flood of kind ``mode`` (``questions``: the kinds in turn)."""
    kind = FLOODS[index % len(FLOODS)] if mode == "questions" else mode
    if kind == "sanity":
        return {"type": "sanity"}
    if kind == "compare":
        return {"type": "compare", "methods": ["lime", SLOW_METHOD]}
    if kind == "counterfactual":
        return {"type": "counterfactual", "target": index % 10}
    return {"type": "select", "output": index % 10, "hidden": None}  # onpause: a still drawing's costly frame


async def flood(client: Client, mode: str, strokes: Sequence[Sequence[Sequence[float]]], rate: float,
                stop: float) -> None:
    """A real digit, the costliest method, then ``mode``'s requests at ``rate`` per second."""
    for stroke_id, stroke in enumerate(strokes):
        for start in range(0, len(stroke), MAX_POINTS_PER_MESSAGE):
            points = [list(point) for point in stroke[start:start + MAX_POINTS_PER_MESSAGE]]
            await client.send({"type": "stroke", "id": stroke_id, "points": points})
    await client.send({"type": "configure", "method": SLOW_METHOD})
    started = time.monotonic()
    for index in itertools.count():
        if time.monotonic() >= stop:
            return
        await client.send(flood_request(mode, index))
        await asyncio.sleep(max(0.0, started + (index + 1) / rate - time.monotonic()))


async def abuse(client: Client, mode: str, rate: float, stop: float, digit: Sequence = ()) -> None:
    """The worst allowed thing (see the module's docstring), at ``rate`` messages per second."""
    if mode not in ("zigzag", "rescale"):
        try:
            await flood(client, mode, digit, rate, stop)
        except ConnectionClosed:
            pass  # the server closed this flooder (e.g. refused messages); the others flood on
        return
    total, low, high = (4096, 0.0, 1.0) if mode == "zigzag" else (4096 - 64, 0.1, 0.9)
    points = zigzag(total, low, high)
    for start in range(0, total, MAX_POINTS_PER_MESSAGE):
        await client.send({"type": "stroke", "id": 0, "points": points[start:start + MAX_POINTS_PER_MESSAGE]})
    for index in itertools.count():
        if time.monotonic() >= stop:
            return
        if mode == "zigzag":
            await client.send({"type": "select", "output": index % 10, "hidden": None})
        elif index % 2 == 0:  # a dot outside the zig-zag's box: the drawing is rescaled
            await client.send({"type": "stroke", "id": index + 1, "points": [[0.0, 0.0]]})
        else:
            await client.send({"type": "undo"})
        await asyncio.sleep(1 / rate)


async def window(url: str, origin: str, strokes: Sequence, abusers: int, mode: str, rate: float,
                 duration_s: float, control: tuple[str, str] | None = None) -> Window:
    """Measure the bystander for ``duration_s`` beside ``abusers`` abusing visitors (0: alone), and a control
    bystander on the server at ``control`` (url, origin) at the same time, if given."""
    clients = [await open_client(url, origin) for _ in range(abusers + 1)]
    bystander, others = clients[0], clients[1:]
    controls = [await open_client(*control)] if control else []
    receivers = [asyncio.create_task(client.receive()) for client in clients + controls]
    try:
        digit = strokes[:2]  # the first drawing's strokes or so: a real digit for the flooders
        abusing = [asyncio.create_task(abuse(client, mode, rate, time.monotonic() + duration_s + 1.0, digit))
                   for client in others]
        await asyncio.sleep(1.0 if others else 0.0)  # the abusers' drawings are in
        frames_before = [client.frames for client in clients]
        answers_before = [client.answers for client in others]
        started = time.monotonic()
        await asyncio.gather(*(bystander_draws(client, strokes, started + duration_s)
                               for client in [bystander, *controls]))
        elapsed = time.monotonic() - started
        frames = [client.frames - before for client, before in zip(clients, frames_before)]
        answers = [client.answers - before for client, before in zip(others, answers_before)]
        await asyncio.gather(*abusing)
        await asyncio.sleep(0.5)  # the last frames
    finally:
        for client in clients + controls:
            await client.socket.close()
        await asyncio.gather(*receivers, return_exceptions=True)
    return Window(answered(bystander), frames[0], frames[1:], elapsed, answers,
                  [latency for client in controls for latency in answered(client)])


def answered(client: Client) -> list[float]:
    """``client``'s latencies, ms; a message still unanswered counts as +inf."""
    return client.latency_ms + [np.inf] * len(client.sent)


def pooled(windows: list[Window]) -> Phase:
    samples = np.concatenate([np.asarray(item.latency_ms) for item in windows])
    elapsed = sum(item.elapsed_s for item in windows)
    abusers = [frames for item in windows for frames in item.abuser_frames]
    answers = [count for item in windows for count in item.abuser_answers]
    per_abuser_s = len(windows[0].abuser_frames) * elapsed
    control = [latency for item in windows for latency in item.control_latency_ms]
    return Phase(round(float(np.percentile(samples, 50, method="inverted_cdf")), 2),
                 round(float(np.percentile(samples, 99, method="inverted_cdf")), 2),
                 round(sum(item.bystander_frames for item in windows) / elapsed, 1),
                 round(sum(abusers) / per_abuser_s, 1) if abusers else None,
                 round(sum(answers) / per_abuser_s, 2) if abusers else None,
                 round(float(np.percentile(control, 99, method="inverted_cdf")), 2) if control else None)


async def measure(url: str, origin: str, abusers: int = 3, mode: str = "zigzag", rate: float = 120.0,
                  duration_s: float = 4.0, rounds: int = 2,
                  control: tuple[str, str] | None = None) -> dict[str, dict | float]:
    """The bystander alone (the baseline) and beside the abusers, alternately ``rounds`` times, pooled:
    alternating spreads a busy moment of the machine over both.  With ``control`` (url, origin of a second
    server), also ``excess_ratio``: ``p99_ratio`` over the control bystander's (see the module docstring)."""
    drawings, _ = load_drawings(4)
    strokes = [stroke for drawing in drawings for stroke in drawing]
    alone, abused = [], []
    for _ in range(rounds):
        alone.append(await window(url, origin, strokes, 0, mode, rate, duration_s, control))
        abused.append(await window(url, origin, strokes, abusers, mode, rate, duration_s, control))
    baseline, under_abuse = pooled(alone), pooled(abused)
    report: dict[str, dict | float] = {"baseline": asdict(baseline), "abused": asdict(under_abuse),
                                       "p99_ratio": round(under_abuse.p99_ms / baseline.p99_ms, 2)}
    if baseline.control_p99_ms is not None and under_abuse.control_p99_ms is not None:
        control_ratio = under_abuse.control_p99_ms / baseline.control_p99_ms
        report["excess_ratio"] = round(under_abuse.p99_ms / baseline.p99_ms / control_ratio, 2)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fairness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", default="zigzag", help=f"comma separated, from {MODES}")
    parser.add_argument("--abusers", type=int, default=3)
    parser.add_argument("--rate", type=float, default=120.0, help="abusers' messages per second each")
    parser.add_argument("--duration", type=float, default=4.0, help="measuring window, seconds")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of baseline and abuse windows")
    parser.add_argument("--servers", default="server", help=f"comma separated, from {sorted(KINDS)}")
    parser.add_argument("--control", action="store_true",
                        help="also a control bystander on a second server of the same kind (excess_ratio)")
    parser.add_argument("--repo", type=Path, action="append", default=[],
                        help="also measure the server of this checkout (another commit), once per --repo")
    args = parser.parse_args(argv)
    modes = args.mode.split(",")
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {unknown}; known: {MODES}")
    report: dict[str, dict] = {}
    for repo in [REPO, *args.repo]:
        for name in args.servers.split(","):
            label = name if repo == REPO else f"{name}@{repo}"
            # One server per mode: a flood's queued work must not spill into the next mode's windows.
            for mode in modes:
                with LocalServer(KINDS[name], None, {}, repo=repo) as server, \
                        (LocalServer(KINDS[name], None, {}, repo=repo) if args.control else nullcontext()) as twin:
                    control = (twin.url, twin.origin) if twin else None
                    report.setdefault(mode, {})[label] = asyncio.run(measure(
                        server.url, server.origin, args.abusers, mode, args.rate, args.duration, args.rounds,
                        control))
    print(orjson.dumps({"abusers": args.abusers, "rate": args.rate, "modes": report},
                       option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
