"""A visitor that draws, loses its connection, reconnects and replays its drawing, as the page does.

Shared by the deployment tests (loopback nginx in ``test_deploy.py``, Docker
compose and swarm in ``test_docker.py``).
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
from starlette import status
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

WAIT_S = 30.0  # default bound on every wait for a condition


async def until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S, every_s: float = 0.02) -> None:
    """Wait until ``condition()`` holds, checking every ``every_s``; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(every_s)



@dataclass
class Record:
    """What one visitor saw: its connections, how each ended, its frames (time, connection), refusals."""

    connections: int = 0
    close_codes: list[int] = field(default_factory=list)
    frames: list[tuple[float, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def frames_since(self, moment: float, connection: int | None = None) -> int:
        return sum(1 for at, number in self.frames if at > moment and connection in (None, number))


class ReconnectingVisitor:
    """Draws a golden digit point by point; on a lost connection reconnects and replays, as the page does.

    docs/protocol.md: reconnect after 1011, 1012, 1013 and 1006 with jittered
    exponential backoff, then replay the drawing (one message per stroke).
    """

    POINT_INTERVAL_S = 0.03

    def __init__(self, url: str, origin: str, strokes: list[list[tuple[float, float]]], seed: int,
                 max_connections: int = 5) -> None:
        self.url, self.origin, self.strokes = url, origin, strokes
        self.max_connections = max_connections
        self.random = random.Random(seed)
        self.record = Record()
        self.drawn: list[list[tuple[float, float]]] = []
        self.position = (0, 0)  # (stroke, point) of the next point to draw

    def next_point(self) -> tuple[bool, tuple[float, float]]:
        """Add the next point to ``drawn``; ``True`` when it starts the digit over (the drawing was cleared)."""
        stroke, point = self.position
        restarted = stroke == len(self.strokes)
        if restarted:
            self.drawn, stroke = [], 0
        if point == 0:
            self.drawn.append([])
        value = self.strokes[stroke][point]
        self.drawn[-1].append(value)
        point += 1
        self.position = (stroke + 1, 0) if point == len(self.strokes[stroke]) else (stroke, point)
        return restarted, value

    async def run(self, stop: asyncio.Event) -> None:
        for attempt in range(self.max_connections):
            try:
                async with connect(self.url, origin=self.origin, compression=None, open_timeout=10,
                                   max_size=None) as connection:
                    await self.session(connection, stop)
                    return
            except ConnectionClosed as closed:
                self.record.close_codes.append(closed.rcvd.code if closed.rcvd else status.WS_1006_ABNORMAL_CLOSURE)
            if stop.is_set():
                return
            await asyncio.sleep(self.random.uniform(0.5, 1.0) * 0.05 * 2**attempt)

    async def session(self, connection: ClientConnection, stop: asyncio.Event) -> None:
        """One connection: welcome, replay, then one point per interval until ``stop``."""
        self.record.connections += 1
        number = self.record.connections
        welcome = orjson.loads(await connection.recv())
        assert welcome["type"] == "welcome", welcome
        seq, first_id = 0, 0  # stroke ids keep increasing on a connection, also after `clear`

        async def send(message: dict) -> None:
            nonlocal seq
            seq += 1
            await connection.send(orjson.dumps({**message, "seq": seq}).decode())

        async def receive() -> None:
            async for raw in connection:
                message = orjson.loads(raw)
                if message["type"] == "frame":
                    self.record.frames.append((time.monotonic(), number))
                elif message["type"] == "error":
                    self.record.errors.append(message["code"])

        receiver = asyncio.create_task(receive())
        try:
            for index, stroke in enumerate(self.drawn):  # replay: a new connection is a new drawing
                await send({"type": "stroke", "id": index, "points": [list(p) for p in stroke]})
            while not stop.is_set() and not receiver.done():
                restarted, point = self.next_point()
                if restarted:
                    first_id += len(self.strokes)
                    await send({"type": "clear"})
                await send({"type": "stroke", "id": first_id + len(self.drawn) - 1, "points": [list(point)]})
                await asyncio.sleep(self.POINT_INTERVAL_S)
        finally:
            if receiver.done():
                receiver.result()  # closed by the server: ConnectionClosed goes up to `run`
            receiver.cancel()


@asynccontextmanager
async def drawing(visitors: list[ReconnectingVisitor], stop_within_s: float = WAIT_S) -> AsyncIterator[list[Record]]:
    """Run ``visitors`` while the block runs, giving their records; then stop them (all within
    ``stop_within_s``) and, if the block passed, assert that none failed or was refused a message."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(visitor.run(stop)) for visitor in visitors]
    try:
        yield [visitor.record for visitor in visitors]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), stop_within_s)
    for task in tasks:
        assert task.exception() is None, task.exception()
    assert not [visitor.record.errors for visitor in visitors if visitor.record.errors]
