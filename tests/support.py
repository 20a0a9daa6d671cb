"""Test helpers shared by the whole suite: a real server, and a client that speaks protocol v1.

- :func:`running_app`: the app under a real ``uvicorn.Server`` inside the test's
  event loop, on 127.0.0.1 and a port picked by the kernel; yields the base URL
  once the lifespan (model loading, golden-digit check) has completed.
- :func:`server_process`: ``python -m server`` as a subprocess (env overrides,
  port 0), yielded once ``/readyz`` answers 200; for SIGTERM, page and deploy tests.
- :class:`Visitor`: a ``websockets`` client with an Origin, automatic ``seq``,
  JSON receive with a timeout, and :func:`decode_array` for the base64 arrays.

Every wait here has a deadline and waits on a signal (a flag, a log line, an
HTTP answer), never on a fixed sleep.
"""

import asyncio
import base64
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from server.__main__ import bind, uvicorn_config
from server.app import create_app
from server.inference.jobs import EngineFactory, default_engine_factory
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 60.0
RECEIVE_TIMEOUT_S = 10.0


def ws_url(base_url: str, path: str = "/ws") -> str:
    """``http://host:port`` → ``ws://host:port/ws``."""
    return base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + path


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()  # re-raise the startup failure
            raise RuntimeError("uvicorn exited during startup (see the log above)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not started within {STARTUP_TIMEOUT_S} s")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def running_app(engine_factory: EngineFactory = default_engine_factory, send_buffer_bytes: int | None = None,
                      end_process: Callable[[], None] | None = None, **overrides: Any) -> AsyncIterator[str]:
    """Serve ``create_app`` on 127.0.0.1:<free port> in this event loop; yield ``http://127.0.0.1:PORT``.

    ``overrides`` are :class:`~server.settings.Settings` fields on top of the
    environment (e.g. ``max_connections=1``).  ``send_buffer_bytes``: the kernel
    send buffer (``SO_SNDBUF``) of every accepted connection, which Linux
    otherwise sizes itself, up to megabytes.  ``end_process``: what the app calls once no engine thread
    is left (``server.healing``; default: this server shuts down, where a real process sends itself
    SIGTERM).  On exit the server shuts down as on SIGTERM (open WebSockets get 1012).
    """
    settings = Settings.from_env(**{"host": "127.0.0.1", "port": 0, **overrides})
    sock = bind(settings.host, 0)
    if send_buffer_bytes is not None:  # accepted sockets inherit it (socket(7))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    port = sock.getsockname()[1]
    def stop() -> None:
        server.should_exit = True

    app = create_app(settings, engine_factory, end_process or stop)
    server = uvicorn.Server(uvicorn_config(app, settings, configure_logging=False))
    # uvicorn installs SIGINT/SIGTERM handlers only from the main thread: tests trigger exit themselves.
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await _wait_started(server, task)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class ServerProcess:
    """A running ``python -m server``: ``url`` is ``http://127.0.0.1:PORT``; ``lines`` its log so far."""

    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(self.lines)


def _read_lines(process: subprocess.Popen[str], lines: list[str], listening: queue.SimpleQueue[int]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line.rstrip("\n"))
        if '"event":"listening"' in line:
            listening.put(int(orjson.loads(line)["port"]))
    listening.put(-1)  # end of output: the process exited


def get_status(url: str, timeout_s: float = 5.0) -> int:
    """HTTP status of ``GET url`` (errors included), e.g. ``get_status(base + "/readyz")``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def fetch(url: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """``GET url`` off the event loop (the in-process server shares it): status and body."""
    def get() -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
    return await asyncio.to_thread(get)


async def metric(base_url: str, sample: str, **labels: str) -> float:
    """The value of one ``/metrics`` sample, e.g. ``metric(url, "xai_open_connections")``; 0 if absent."""
    status, body = await fetch(base_url + "/metrics")
    if status != 200:
        raise AssertionError(f"/metrics answered {status}")
    for family in text_string_to_metric_families(body.decode()):
        for found in family.samples:
            if found.name == sample and found.labels == labels:
                return found.value
    return 0.0


async def wait_for_metric(base_url: str, sample: str, expected: float, timeout_s: float = RECEIVE_TIMEOUT_S,
                          **labels: str) -> None:
    """Poll ``/metrics`` until ``sample`` equals ``expected``; raise ``TimeoutError`` with the last value."""
    value = None
    try:
        async with asyncio.timeout(timeout_s):
            while (value := await metric(base_url, sample, **labels)) != expected:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"{sample}{labels} stayed {value}, expected {expected}") from None


def _wait_ready(server: ServerProcess, deadline: float) -> None:
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if get_status(server.url + "/readyz", timeout_s=2.0) == 200:
                return
        except OSError:
            pass  # not accepting connections yet: retry until the deadline
        if time.monotonic() > deadline:
            raise TimeoutError(f"/readyz not 200 within {STARTUP_TIMEOUT_S} s:\n{server.log()}")
        time.sleep(0.05)


@contextmanager
def server_process(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """Run ``python -m server *args`` with ``env`` on top of this process's environment.

    The port is 0 unless ``env`` or ``args`` set one, and ``PROCESSES`` 1 unless
    ``env`` sets it; the bound port is read
    from the ``listening`` log event.  Yields once ``/readyz`` is 200; on exit
    sends SIGTERM and waits (then SIGKILL after 15 s).
    """
    # One server process unless the test asks for more: a replica's processes are tested on their own.
    environment = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", "PROCESSES": "1", **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "server", *args], cwd=ROOT, env=environment,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    lines: list[str] = []
    listening: queue.SimpleQueue[int] = queue.SimpleQueue()
    reader = threading.Thread(target=_read_lines, args=(process, lines, listening), daemon=True)
    reader.start()
    try:
        port = listening.get(timeout=STARTUP_TIMEOUT_S)
        if port < 0:
            raise RuntimeError("server exited before listening:\n" + "\n".join(lines))
        server = ServerProcess(f"http://127.0.0.1:{port}", process, lines)
        _wait_ready(server, time.monotonic() + STARTUP_TIMEOUT_S)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)


def decode_array(array: dict[str, Any]) -> np.ndarray:
    """A protocol array (``{"dtype", "shape", "scale"?, "data"}``) as float32, exactly as docs/protocol.md."""
    raw = base64.b64decode(array["data"], validate=True)
    count = int(np.prod(array["shape"]))
    if array["dtype"] == "u4":  # two values a byte, the first in the high nibble
        packed = np.frombuffer(raw, dtype=np.uint8)
        values = np.stack([packed >> 4, packed & 15], axis=1).ravel()[:count].astype(np.float32)
    else:
        dtype = {"u8": np.uint8, "i8": np.int8, "f32": "<f4"}[array["dtype"]]
        values = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    return (values * np.float32(array.get("scale", 1.0))).reshape(array["shape"])


class Visitor:
    """One protocol-v1 client: ``send`` numbers messages, ``recv`` returns parsed JSON.

    Use ``async with Visitor.connect(base_url) as visitor:``; the welcome is
    read on connect and kept in ``visitor.welcome``.
    """

    def __init__(self, connection: ClientConnection, welcome: dict[str, Any]) -> None:
        self.connection = connection
        self.welcome = welcome
        self.seq = 0
        self.stroke_id = -1

    @classmethod
    @asynccontextmanager
    async def connect(cls, base_url: str, origin: str | None = None, **options: Any) -> AsyncIterator["Visitor"]:
        """Open ``/ws`` with ``Origin: origin`` (default: the server's own origin) and read the welcome."""
        async with connect(ws_url(base_url), origin=Origin(origin or base_url), compression=None,
                           max_size=None, open_timeout=RECEIVE_TIMEOUT_S, **options) as connection:
            visitor = cls(connection, {})
            visitor.welcome = await visitor.recv()
            if visitor.welcome.get("type") != "welcome":
                raise AssertionError(f"expected a welcome first, got {visitor.welcome.get('type')!r}")
            yield visitor

    async def send(self, kind: str, **fields: Any) -> int:
        """Send ``{"type": kind, "seq": next, **fields}``; return its ``seq``."""
        self.seq += 1
        await self.connection.send(orjson.dumps({"type": kind, "seq": self.seq, **fields}).decode())
        return self.seq

    async def send_raw(self, data: str | bytes) -> None:
        """Send ``data`` as is (``bytes`` go as a binary frame)."""
        await self.connection.send(data)

    async def recv(self, timeout_s: float = RECEIVE_TIMEOUT_S) -> dict[str, Any]:
        """The next message, parsed."""
        async with asyncio.timeout(timeout_s):
            return orjson.loads(await self.connection.recv())

    async def recv_type(self, kind: str, timeout_s: float = RECEIVE_TIMEOUT_S) -> dict[str, Any]:
        """The next message of type ``kind``, skipping others (e.g. frames before an error)."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = orjson.loads(await self.connection.recv())
                if message["type"] == kind:
                    return message

    async def frame_for(self, seq: int | None, timeout_s: float = RECEIVE_TIMEOUT_S) -> dict[str, Any]:
        """The first frame that reflects ``seq`` (its ``seq`` is at least ``seq``; ``None``: the first frame).

        Raises ``AssertionError`` if an ``error`` message comes first.
        """
        async with asyncio.timeout(timeout_s):
            while True:
                message = orjson.loads(await self.connection.recv())
                if message["type"] == "error":
                    raise AssertionError(f"refused: {message}")
                if message["type"] == "frame" and (seq is None or (message["seq"] is not None
                                                                  and message["seq"] >= seq)):
                    return message

    async def draw(self, strokes: list[list[tuple[float, float]]]) -> int:
        """Send each stroke as one ``stroke`` message with a new id; return the last ``seq``."""
        seq = self.seq
        for stroke in strokes:
            self.stroke_id += 1
            seq = await self.send("stroke", id=self.stroke_id, points=[list(point) for point in stroke])
        return seq
