"""The deployment on a real Docker engine: the image, compose with replicas behind nginx, a swarm rolling update.

Marked ``deploy`` (minutes: the images are built once per session, by
``deploy/images.py`` as ``make image`` does). Needs a Docker engine: a running
one, or Debian's ``dockerd``, which is started here when the tests run as root
and stopped at the end. Without one, every test here is skipped with the reason.
The proxy publishes on 127.0.0.1 only, on a free port; every container,
network, stack and the swarm made here are removed at the end.
"""

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from reconnecting import ReconnectingVisitor, drawing, until
from starlette import status
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from deploy.images import ImageError, Images, MissingPrerequisite, build_images
from model_store.strokes import Stroke, load_golden_digits
from support import ROOT

pytestmark = pytest.mark.deploy

COMPOSE_FILE = ROOT / "docker-compose.yml"
SWARM_FILE = ROOT / "deploy" / "swarm.yml"
DOCKERD = "/usr/sbin/dockerd"
HEALTHY_S = 240.0  # replicas import torch and load models; several start at once on 2 shared cores
RECONNECT_S = 60.0  # a visitor of a killed or stopped replica is drawing again within this


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def engine_running() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode == 0


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker engine for the session: the running one, or ``dockerd`` started (and stopped) here."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI: apt-get install docker.io (make test does, as root)")
    if engine_running():
        yield
        return
    if not Path(DOCKERD).exists():
        pytest.skip("no Docker engine: apt-get install docker.io (make test does, as root)")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine running, and starting dockerd needs root")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("wb") as output:
        process = subprocess.Popen([DOCKERD], stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not engine_running():
            if process.poll() is not None or time.monotonic() > deadline:
                lines = log.read_text(errors="replace").splitlines()
                cause = [line for line in lines if "failed to start" in line or "level=fatal" in line] or lines[-1:]
                pytest.skip(f"dockerd could not start here: {' '.join(cause)[-400:]}")
            time.sleep(0.5)
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.fixture(scope="session")
def images(engine: None) -> Images:
    """The app and proxy images, built once per session (layers cached by the engine across sessions)."""
    started = time.monotonic()
    try:
        built = build_images(env_file=None)
    except MissingPrerequisite as missing:
        pytest.skip(str(missing))
    except ImageError as error:
        pytest.fail(str(error))
    print(f"images {built} ready in {time.monotonic() - started:.0f} s")
    return built


def test_a_cpu_quota_caps_the_server_processes(images: Images) -> None:
    """``docker run --cpus 1``: one server process, not one per CPU of the host (server.cores)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("a quota below the host's CPUs needs a host of at least two")
    container = docker("run", "--detach", "--cpus", "1", images.app).strip()
    try:
        def logs() -> str:  # the container's stdout and stderr, where the server logs
            result = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
            return result.stdout + result.stderr

        deadline = time.monotonic() + HEALTHY_S
        while not (events := [orjson.loads(line) for line in logs().splitlines() if '"event":"listening"' in line]):
            assert time.monotonic() < deadline, logs()[-2000:]
            time.sleep(0.5)
        assert events[0]["processes"] == 1, events[0]
    finally:
        docker("rm", "--force", container)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def compose_command() -> list[str]:
    """``docker compose`` (v2 plugin) where the CLI has it, else Debian's docker-compose v1."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither `docker compose` nor docker-compose: apt-get install docker-compose")


@dataclass
class Deployment:
    """Where a deployment's proxy listens, and its name (compose project or stack)."""

    name: str
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def environment(self, images: Images) -> dict[str, str]:
        # One server process per replica: the tests run several replicas on 2 shared cores.
        return {**os.environ, **images.env(), "PROXY_BIND": "127.0.0.1", "PROXY_PORT": str(self.port),
                "PROCESSES": "1"}


def inspect(container: str, template: str) -> str:
    return docker("inspect", "-f", template, container).strip()


def open_connections(container: str) -> int:
    """The replica's ``xai_open_connections`` (summed over its samples), read inside the container."""
    text = docker("exec", container, "python", "-c",
                  "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())")
    samples = re.findall(r"^xai_open_connections(?:\{[^}]*\})? (\S+)$", text, re.MULTILINE)
    assert samples, text[:2000]
    return round(sum(float(value) for value in samples))


async def wait_healthy(containers: list[str]) -> None:
    def healthy() -> bool:
        states = docker("inspect", "-f", "{{.State.Health.Status}}", *containers).split()
        return states == ["healthy"] * len(containers)

    await until(healthy, f"{len(containers)} replicas to turn healthy", HEALTHY_S, every_s=1)


class Artist:
    """One visitor drawing a whole digit at once; after losing its replica it reconnects and replays it."""

    def __init__(self, deployment: Deployment, strokes: list[Stroke]) -> None:
        self.deployment, self.strokes = deployment, strokes
        self.connection: ClientConnection | None = None

    async def draw(self) -> dict:
        """Connect through the proxy, send the drawing, return the frame that reflects all of it."""
        self.connection = await connect(self.deployment.ws, origin=self.deployment.base, compression=None,
                                        open_timeout=30, max_size=None)
        welcome = orjson.loads(await self.connection.recv())
        assert welcome["type"] == "welcome", welcome
        for seq, stroke in enumerate(self.strokes, start=1):
            await self.connection.send(orjson.dumps(
                {"type": "stroke", "id": seq - 1, "points": [list(point) for point in stroke], "seq": seq}).decode())
        return await self.frame(len(self.strokes))

    async def frame(self, seq: int) -> dict:
        assert self.connection is not None
        async with asyncio.timeout(RECONNECT_S):
            while True:
                message = orjson.loads(await self.connection.recv())
                assert message["type"] != "error", message
                if message["type"] == "frame" and (message["seq"] or 0) >= seq:
                    return message

    async def closed_with(self) -> int:
        """Wait for the server (or the proxy) to end the connection; its close code (1006 if none)."""
        assert self.connection is not None
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(RECONNECT_S):
                while True:
                    await self.connection.recv()
        return closed.value.rcvd.code if closed.value.rcvd else status.WS_1006_ABNORMAL_CLOSURE


class Compose:
    """``docker compose`` (or docker-compose v1) on docker-compose.yml, and any ``overrides``, as one project."""

    def __init__(self, deployment: Deployment, images: Images, overrides: tuple[Path, ...] = ()) -> None:
        files = [argument for path in (COMPOSE_FILE, *overrides) for argument in ("-f", str(path))]
        self.command = [*compose_command(), "-p", deployment.name, *files]
        self.env = deployment.environment(images)

    def __call__(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run([*self.command, *args], cwd=ROOT, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        assert result.returncode == 0, f"{' '.join(args)}: {result.stderr}"
        return result.stdout

    def containers(self, service: str) -> list[str]:
        return self("ps", "-q", service).split()


@pytest.fixture
def compose(images: Images) -> Iterator[tuple[Compose, Deployment]]:
    deployment = Deployment(name=f"xai-test-{os.getpid()}", port=free_port())
    project = Compose(deployment, images)
    try:
        yield project, deployment
    finally:
        project("down", "--volumes", "--remove-orphans", "--timeout", "20")


@pytest.mark.timeout(1800)  # the first test also builds the images (debootstrap, pip): minutes
async def test_compose_replicas_scale_fail_over_and_stop(compose: tuple[Compose, Deployment]) -> None:
    project, deployment = compose
    started = time.monotonic()
    project("up", "-d")
    replicas = project.containers("app")
    assert len(replicas) == 3, replicas
    await wait_healthy(replicas)
    print(f"compose up: 3 replicas healthy after {time.monotonic() - started:.0f} s")

    # Non-root, read-only root filesystem, as the compose file says; only /tmp (tmpfs) is writable.
    for replica in replicas:
        assert inspect(replica, "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}") == "10001:10001 true"
        assert docker("exec", replica, "id", "-u").strip() == "10001"
        refused = subprocess.run(["docker", "exec", replica, "touch", "/app/server/probe"], capture_output=True,
                                 text=True)
        assert refused.returncode != 0 and "Read-only file system" in refused.stderr, refused.stderr
        docker("exec", replica, "touch", "/tmp/probe")
    # The build secret (the CA bundle pip trusted) stayed in the build: no file of the image has it.
    # (find as uid 10001 exits 1 on unreadable directories such as /root: only its output counts.)
    assert not docker("exec", replicas[0], "find", "/", "-xdev", "-path", "*/secrets/ca", check=False).strip()

    # A visitor draws a digit through the proxy on 127.0.0.1 and gets its frame.
    golden = load_golden_digits()
    artist = Artist(deployment, golden[3])
    before = await artist.draw()
    assert before["prediction"] == 3
    assert sum(open_connections(replica) for replica in replicas) == 1

    # --scale app=5 is followed by the running nginx (no restart): new connections reach the new replicas.
    proxy = project.containers("proxy")[0]
    proxy_started = inspect(proxy, "{{.State.StartedAt}} {{.RestartCount}}")
    project("up", "-d", "--scale", "app=5")
    scaled = project.containers("app")
    assert len(scaled) == 5 and set(replicas) <= set(scaled), scaled
    await wait_healthy(scaled)
    assert inspect(proxy, "{{.State.StartedAt}} {{.RestartCount}}") == proxy_started
    added = [replica for replica in scaled if replica not in replicas]
    others: list[ClientConnection] = []
    try:
        # nginx picks a random resolved address per connection: open some until each new replica has one.
        for _ in range(12):
            for _ in range(5):
                others.append(await connect(deployment.ws, origin=deployment.base, compression=None, open_timeout=30))
            if all(open_connections(replica) >= 1 for replica in added):
                break
        assert all(open_connections(replica) >= 1 for replica in added), "a new replica got no connection"
    finally:
        for other in others:
            await other.close()
    await until(lambda: sum(open_connections(replica) for replica in scaled) == 1, "the extra connections to end",
                every_s=0.5)

    # docker kill of the visitor's replica: the visitor loses it (1006), reconnects through the proxy
    # to another replica, replays its drawing and sees the same drawing and prediction again.
    [own] = [replica for replica in scaled if open_connections(replica) == 1]
    docker("kill", own)
    assert await artist.closed_with() == status.WS_1006_ABNORMAL_CLOSURE
    after = await artist.draw()
    assert after["input"] == before["input"] and after["prediction"] == before["prediction"]
    living = [replica for replica in scaled if replica != own]
    assert sum(open_connections(replica) for replica in living) == 1

    # docker compose down: the replicas stop before the proxy, so the visitor is told 1012.
    stopping = asyncio.create_task(asyncio.to_thread(project, "down", "--timeout", "20"))
    assert await artist.closed_with() == status.WS_1012_SERVICE_RESTART
    await stopping


# Self-healing (issue 29.2)

FAULTS_DIR = ROOT / "tests" / "faults"  # sitecustomize: hidden neuron 13 hangs its engine call
HANG_DEADLINE_S = 1.0
# Inside a replica, on its own port: visitors whose frame selects hidden neuron 13 hang their engine thread,
# one after another, until the process has no thread left and ends itself (or 12 tries). With WORKERS=1 the
# third hang does it (the first two are replaced by warm spares); a visitor that arrives while a spare warms
# is refused 1013 and the next one tries again. Prints each visitor's close code.
HANG_SCRIPT = """
import asyncio, json, time
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def hang():
    try:
        async with connect("ws://127.0.0.1:8000/ws", origin="http://127.0.0.1:8000", open_timeout=10) as ws:
            json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "stroke", "id": 0, "points": [[0.3, 0.3], [0.7, 0.7]], "seq": 1}))
            while json.loads(await ws.recv())["type"] != "frame":
                pass
            await ws.send(json.dumps({"type": "select", "output": None, "hidden": 13, "seq": 2}))
            async with asyncio.timeout(30):
                while True:
                    await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else 1006
    except OSError as error:
        return type(error).__name__

for _ in range(12):
    print(asyncio.run(hang()), flush=True)
    time.sleep(0.5)
"""


def hanging_override(directory: Path) -> Path:
    """A compose override: the app's replicas run the fault hook (tests/faults, mounted read-only), one frame
    thread each and a 1 s compute deadline, as the process test does (test_server_processes.py)."""
    override = directory / "hanging.yml"
    override.write_bytes(orjson.dumps({"services": {"app": {
        "environment": {"PYTHONPATH": "/faults", "WORKERS": "1", "COMPUTE_DEADLINE_S": str(HANG_DEADLINE_S)},
        "volumes": [{"type": "bind", "source": str(FAULTS_DIR), "target": "/faults", "read_only": True}]}}}))
    return override  # JSON is YAML


@pytest.fixture
def hanging_compose(images: Images, tmp_path: Path) -> Iterator[tuple[Compose, Deployment]]:
    deployment = Deployment(name=f"xai-heal-{os.getpid()}", port=free_port())
    project = Compose(deployment, images, (hanging_override(tmp_path),))
    try:
        yield project, deployment
    finally:
        project("down", "--volumes", "--remove-orphans", "--timeout", "20")


async def newcomers_served(deployment: Deployment, count: int) -> list[Artist]:
    """``count`` new visitors through the proxy, each drawing a golden digit: all read it right."""
    golden = load_golden_digits()
    artists = [Artist(deployment, golden[digit]) for digit in range(count)]
    for digit, artist in enumerate(artists):
        assert (await artist.draw())["prediction"] == digit
    return artists


async def close_all(artists: list[Artist]) -> None:
    for artist in artists:
        assert artist.connection is not None
        await artist.connection.close()


@pytest.mark.timeout(1800)  # may build the images too, when run alone
async def test_compose_restarts_a_replica_whose_engine_threads_all_hung(
        hanging_compose: tuple[Compose, Deployment]) -> None:
    """Issue 29.2: every engine thread of a replica hung, it exits and compose's ``restart:`` brings it back;
    meanwhile nginx sends new visitors to the other replica; then it serves frames again.  Before the
    self-healing rule such a replica stayed up, red, and answered every visitor 1011 for good: on the code
    before it (e7c8da9~1, with tests/faults) this test timed out waiting for the restart."""
    project, deployment = hanging_compose
    started = time.monotonic()
    project("up", "-d", "--scale", "app=2")
    replicas = project.containers("app")
    assert len(replicas) == 2, replicas
    await wait_healthy(replicas)
    target, other = replicas
    print(f"compose up: 2 replicas healthy after {time.monotonic() - started:.0f} s")
    assert inspect(target, "{{.RestartCount}}") == "0"

    hanging_at = time.monotonic()
    hangs = await asyncio.to_thread(subprocess.run, ["docker", "exec", target, "python", "-c", HANG_SCRIPT],
                                    capture_output=True, text=True, timeout=300)
    # The hung visitors were told 1011 (a 1012 or a lost connection once the process is ending): the
    # replica exits with its visitors' sockets, which ends this exec too.
    await until(lambda: inspect(target, "{{.RestartCount}}") == "1", "the hung replica to be restarted",
                RECONNECT_S, every_s=0.2)
    restarted_at = time.monotonic()
    codes = hangs.stdout.split()
    assert codes.count(str(status.WS_1011_INTERNAL_ERROR)) >= 2, (codes, hangs.stderr[-2000:])
    logs = subprocess.run(["docker", "logs", target], capture_output=True, text=True, timeout=60)
    assert '"event":"engine_threads_exhausted"' in logs.stdout + logs.stderr

    # While the restarted replica loads its models it refuses connections, and nginx answers every newcomer
    # from the other replica (proxy_next_upstream): none is lost.
    artists = await newcomers_served(deployment, 4)
    assert open_connections(other) == len(artists)
    served_at = time.monotonic()
    await close_all(artists)

    # The restarted replica turns healthy and serves frames again.
    await wait_healthy([target])
    healed_at = time.monotonic()
    landed: list[Artist] = []
    try:
        for _ in range(12):  # nginx picks a random address per connection: until one lands on the healed replica
            landed += await newcomers_served(deployment, 2)
            if open_connections(target) >= 1:
                break
        assert open_connections(target) >= 1, "no visitor reached the healed replica"
    finally:
        await close_all(landed)
    print(f"hangs to restart {restarted_at - hanging_at:.1f} s, 4 newcomers served by the other replica in "
          f"{served_at - restarted_at:.1f} s, healthy again {healed_at - restarted_at:.0f} s after the restart")


# Swarm

STACK_REPLICAS = 3
SWARM_VISITORS = 6


def service_tasks(service: str) -> list[tuple[str, str]]:
    """(task id, current state) of the service's tasks that should be running."""
    lines = docker("service", "ps", "-q", "--filter", "desired-state=running", "--format",
                   "{{.ID}} {{.CurrentState}}", service).splitlines()
    return [(task_id, state) for task_id, state in (line.split(" ", 1) for line in lines)]


def converged(service: str, replicas: int) -> bool:
    tasks = service_tasks(service)
    return len(tasks) == replicas and all(state.startswith("Running") for _, state in tasks)


@pytest.fixture
def swarm(engine: None) -> Iterator[None]:
    """A one-node swarm on 127.0.0.1 for one test; the node leaves it afterwards."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state != "inactive":
        pytest.skip(f"this engine's swarm state is {state!r}: not touching a swarm made elsewhere")
    # swarm init makes the docker_gwbridge network, which leaving keeps.
    had_bridge = docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$").strip() != ""
    docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        docker("swarm", "leave", "--force", timeout=180)
        if not had_bridge:
            docker("network", "rm", "docker_gwbridge")


@pytest.fixture
def stack(swarm: None, images: Images) -> Iterator[Deployment]:
    deployment = Deployment(name=f"xai-test-{os.getpid()}", port=free_port())
    result = subprocess.run(["docker", "stack", "deploy", "-c", str(COMPOSE_FILE), "-c", str(SWARM_FILE),
                             deployment.name], cwd=ROOT,
                            env=deployment.environment(images), capture_output=True, text=True, timeout=300)
    try:
        assert result.returncode == 0, result.stderr
        yield deployment
    finally:
        docker("stack", "rm", deployment.name, timeout=180)
        deadline = time.monotonic() + 120
        while docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={deployment.name}").strip():
            assert time.monotonic() < deadline, "the stack's containers were not removed"
            time.sleep(1)


@pytest.mark.timeout(1800)  # may build the images too, when run alone
async def test_swarm_rolling_update_keeps_every_visitor(stack: Deployment) -> None:
    app = f"{stack.name}_app"
    update_config = orjson.loads(docker("service", "inspect", "-f", "{{json .Spec.UpdateConfig}}", app))
    assert update_config["Order"] == "start-first" and update_config["Parallelism"] == 1, update_config
    await until(lambda: converged(app, STACK_REPLICAS) and converged(f"{stack.name}_proxy", 1),
                "the stack to converge", HEALTHY_S, every_s=1)

    golden = load_golden_digits()
    visitors = [ReconnectingVisitor(stack.ws, stack.base, golden[index % 10], seed=index, max_connections=10)
                for index in range(SWARM_VISITORS)]
    async with drawing(visitors, stop_within_s=RECONNECT_S) as records:
        await until(lambda: all(record.frames for record in records), "a frame for every visitor", RECONNECT_S)
        old_tasks = {task_id for task_id, _ in service_tasks(app)}
        updating_at = time.monotonic()
        # A rolling restart of every replica: one new task at a time, started and healthy before an old one stops.
        update = await asyncio.to_thread(
            subprocess.run, ["docker", "service", "update", "--force", "--detach=false", app],
            capture_output=True, text=True, timeout=900)
        assert update.returncode == 0, update.stderr
        updated_at = time.monotonic()
        new_tasks = {task_id for task_id, _ in service_tasks(app)}
        assert len(new_tasks) == STACK_REPLICAS and not new_tasks & old_tasks, (old_tasks, new_tasks)
        print(f"swarm rolling update of {STACK_REPLICAS} replicas took {updated_at - updating_at:.0f} s")

        gaps: list[float] = []
        # Every visitor draws on: told 1012 by its stopping replica at most once per replica,
        # reconnected and replayed, and never without frames for longer than a reconnect.
        await until(lambda: all(record.frames_since(updated_at) for record in records),
                    "frames for every visitor after the update", RECONNECT_S)
        for record in records:
            assert set(record.close_codes) <= {status.WS_1012_SERVICE_RESTART}, record.close_codes
            assert record.connections == len(record.close_codes) + 1
            times = [at for at, _ in record.frames if at > updating_at - 1]
            longest = max(later - earlier for earlier, later in zip(times, times[1:]))
            assert longest < RECONNECT_S / 4, f"a visitor went {longest:.1f} s without frames"
            gaps.append(longest)
        moved = sum(len(record.close_codes) for record in records)
        assert moved >= 1, "no visitor was moved: nothing was tested"
        print(f"{moved} moves of {SWARM_VISITORS} visitors; longest time without frames {max(gaps):.2f} s")
