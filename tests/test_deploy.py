"""The deployment: the compose file validates, and the proxy config works in front of real replicas.

These run without a Docker engine (``test_docker.py`` has the ones with one):
Debian's nginx as the current user with the template of
``docker-compose.yml``'s proxy (``deploy/nginx.conf.template``, rendered by
``deploy/render.py`` for loopback upstreams) in front of three ``python -m
server`` processes.
"""

import http.server
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from email.message import Message
from http import HTTPStatus
from pathlib import Path

import orjson
import pytest
from reconnecting import WAIT_S, ReconnectingVisitor, drawing, until
from starlette import status
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from deploy.render import ProxyLimits, render_local, substitute
from model_store.strokes import load_golden_digits
from support import ROOT, ServerProcess, get_status, server_process

pytestmark = pytest.mark.deploy

NGINX = Path("/usr/sbin/nginx")
COMPOSE_FILE = ROOT / "docker-compose.yml"
REPLICAS = 3
VISITORS = 20
SHUTDOWN_GRACE_S = "2"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# docker-compose config

def compose_config() -> str:
    """The file as Debian's docker-compose v1.29 resolves it (it validates while doing so)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; make test does, as root)")
    result = subprocess.run([binary, "-f", str(COMPOSE_FILE), "config"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def seconds(text: str) -> float:
    """A compose duration (``15s``, ``1m``, ``1m30s``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == text, f"unexpected duration {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_compose_config_validates_with_replicas_health_and_grace() -> None:
    config = compose_config()
    assert re.search(r"^\s+replicas: 3$", config, re.MULTILINE)
    assert "/readyz" in config and "/proxy-healthz" in config
    grace = seconds(re.search(r"stop_grace_period: (\S+)", config).group(1))
    shutdown = float(re.search(r"SHUTDOWN_GRACE_S: '([\d.]+)'", config).group(1))
    assert grace > shutdown, f"stop_grace_period {grace} s must exceed SHUTDOWN_GRACE_S {shutdown} s"
    start_period = seconds(re.search(r"start_period: (\S+)", config).group(1))
    assert start_period >= 30
    # The app is reachable only through the proxy: no published port of its own.
    app_block = config.split("\n  app:\n", 1)[1].split("\n  proxy:\n", 1)[0]
    assert "ports:" not in app_block and "expose:" in app_block


def test_render_substitutes_only_the_named_variables() -> None:
    template = "listen ${LISTEN}; set $$x $host; proxy_set_header Upgrade $http_upgrade; $LISTEN"
    assert substitute(template, {"LISTEN": "8080"}) == \
        "listen 8080; set $$x $host; proxy_set_header Upgrade $http_upgrade; 8080"
    with pytest.raises(KeyError, match="BACKEND"):
        substitute("${BACKEND}", {"LISTEN": "8080"})


# nginx in front of real replicas

@dataclass
class Proxy:
    """A running nginx: ``base`` is ``http://127.0.0.1:PORT``."""

    base: str
    process: subprocess.Popen[bytes]
    directory: Path

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"


def wait_listening(port: int, process: subprocess.Popen[bytes], directory: Path) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}: "
                               f"{(directory / 'error.log').read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx not listening on {port} within {WAIT_S} s") from None
            time.sleep(0.02)


@contextmanager
def running_nginx(directory: Path, upstreams: list[str], limits: ProxyLimits = ProxyLimits()) -> Iterator[Proxy]:
    if not NGINX.is_file():
        pytest.skip(f"{NGINX} is not installed (apt-get install nginx; make test does, as root)")
    port = free_port()
    config = render_local(directory, f"127.0.0.1:{port}", upstreams, limits)
    process = subprocess.Popen([str(NGINX), "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, process, directory)
        yield Proxy(f"http://127.0.0.1:{port}", process, directory)
    finally:
        process.terminate()  # nginx: SIGTERM is a fast shutdown
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[ServerProcess]]:
    """Three servers that trust the local proxy's X-Forwarded-* and accept only their own origin."""
    environment = {"FORWARDED_ALLOW_IPS": "127.0.0.1", "ALLOWED_ORIGINS": "self",
                   "SHUTDOWN_GRACE_S": SHUTDOWN_GRACE_S, "LOG_LEVEL": "info"}
    with ExitStack() as stack:
        yield [stack.enter_context(server_process(environment)) for _ in range(REPLICAS)]


@pytest.fixture(scope="module")
def proxy(replicas: list[ServerProcess], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    upstreams = [server.url.removeprefix("http://") for server in replicas]
    with running_nginx(tmp_path_factory.mktemp("nginx"), upstreams) as running:
        yield running


def open_connections(server: ServerProcess) -> int:
    """The replica's ``xai_open_connections`` gauge, read from its own /metrics (not via the proxy)."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    return int(float(re.search(r"^xai_open_connections (\S+)$", text, re.MULTILINE).group(1)))


def test_health_through_proxy_and_metrics_kept_internal(proxy: Proxy) -> None:
    assert get_status(proxy.base + "/healthz") == 200
    assert get_status(proxy.base + "/readyz") == 200
    assert get_status(proxy.base + "/metrics") == 404


async def test_foreign_origin_is_refused_through_the_proxy(proxy: Proxy) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(proxy.ws, origin="http://evil.example", compression=None, open_timeout=10)
    assert refused.value.response.status_code == status.HTTP_403_FORBIDDEN
    # The page's own origin (the proxy's address, carried in Host) is accepted.
    async with connect(proxy.ws, origin=proxy.base, compression=None, open_timeout=10) as accepted:
        assert orjson.loads(await accepted.recv())["type"] == "welcome"


class HeaderRecorder(http.server.BaseHTTPRequestHandler):
    """An upstream that answers 204 and keeps the headers each request arrived with."""

    received: list[Message] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        HeaderRecorder.received.append(self.headers)
        self.send_response(HTTPStatus.NO_CONTENT)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the test reads the headers, not a log."""


def test_proxy_replaces_a_client_sent_forwarded_for(tmp_path: Path) -> None:
    """The app believes X-Forwarded-For from the proxy's address, so the proxy must not pass a forged one on.

    The app no longer logs client addresses, so the proxy's upstream here is a
    plain HTTP server that records what arrives.
    """
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HeaderRecorder)
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        with running_nginx(tmp_path, [f"127.0.0.1:{upstream.server_port}"]) as proxy:
            forged = urllib.request.Request(proxy.base + "/api/models", headers={"X-Forwarded-For": "203.0.113.7"})
            with urllib.request.urlopen(forged, timeout=10) as response:
                assert response.status == HTTPStatus.NO_CONTENT
    finally:
        upstream.shutdown()
        upstream.server_close()
    [headers] = HeaderRecorder.received
    assert headers["X-Forwarded-For"] == "127.0.0.1" and headers["X-Real-IP"] == "127.0.0.1"
    assert headers["Host"] == proxy.base.removeprefix("http://")


async def test_per_ip_connection_limit(replicas: list[ServerProcess], tmp_path: Path) -> None:
    upstreams = [server.url.removeprefix("http://") for server in replicas]
    with running_nginx(tmp_path, upstreams, ProxyLimits(conn_per_ip=2)) as limited:
        async with connect(limited.ws, origin=limited.base, compression=None, open_timeout=10), \
                connect(limited.ws, origin=limited.base, compression=None, open_timeout=10):
            with pytest.raises(InvalidStatus) as refused:
                await connect(limited.ws, origin=limited.base, compression=None, open_timeout=10)
    assert refused.value.response.status_code == status.HTTP_429_TOO_MANY_REQUESTS


async def test_replicas_share_visitors_and_fail_over(replicas: list[ServerProcess], proxy: Proxy) -> None:
    golden = load_golden_digits()
    visitors = [ReconnectingVisitor(proxy.ws, proxy.base, golden[index % 10], seed=index) for index in range(VISITORS)]
    async with drawing(visitors) as records:
        await until(lambda: all(record.frames for record in records), "a frame for every visitor")

        # 1. Spread: least_conn puts visitors on every replica.
        counts = [open_connections(server) for server in replicas]
        assert sum(counts) == VISITORS and min(counts) >= 1, counts

        # 2. SIGKILL a replica: exactly its visitors lose the connection (1006) and reconnect
        #    through the proxy to a live replica; everyone else keeps their connection.
        killed, on_killed = replicas[0], counts[0]
        killed_at = time.monotonic()
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait(timeout=10)
        dropped = lambda: [r for r in records if r.close_codes]  # noqa: E731
        await until(lambda: len(dropped()) == on_killed and all(
            r.connections == 2 and r.frames_since(killed_at, connection=2) for r in dropped()),
            f"{on_killed} visitors of the killed replica to reconnect and get frames")
        assert all(r.close_codes == [status.WS_1006_ABNORMAL_CLOSURE] for r in dropped())
        kept = [r for r in records if not r.close_codes]
        await until(lambda: all(r.frames_since(killed_at) for r in kept), "frames for the other visitors")
        assert all(r.connections == 1 for r in kept)
        assert sum(open_connections(server) for server in replicas[1:]) == VISITORS

        # 3. SIGTERM a replica: its visitors get 1012 and reconnect to the last one.
        stopped = replicas[1]
        on_stopped = open_connections(stopped)
        assert on_stopped >= 1
        before = {id(r): (len(r.close_codes), r.connections) for r in records}
        stopped_at = time.monotonic()
        stopped.process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the captured SIGTERM once its graceful shutdown is done.
        assert stopped.process.wait(timeout=float(SHUTDOWN_GRACE_S) + 10) == -signal.SIGTERM
        told = lambda: [r for r in records if len(r.close_codes) > before[id(r)][0]]  # noqa: E731
        await until(lambda: len(told()) == on_stopped and all(
            r.connections > before[id(r)][1] and r.frames_since(stopped_at, connection=r.connections)
            for r in told()),
                    f"{on_stopped} visitors of the stopped replica to reconnect and get frames")
        assert all(r.close_codes[-1] == status.WS_1012_SERVICE_RESTART for r in told())
        assert open_connections(replicas[2]) == VISITORS
