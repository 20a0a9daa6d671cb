"""The servers a benchmark measures: started locally on loopback, or given by URL.

A local server is a child process on a free loopback port, waited for with
its readiness signal (``GET /readyz`` answering 200) and stopped with
SIGTERM.  Its CPU time and resident memory are read from ``/proc``, summed
over the process and its descendants (the server's engine processes), so
the load generator's own CPU never counts as the server's and the engine's
always does.  For a remote URL,
the server's ``/metrics`` is read instead when it exports the standard
``process_*`` series.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
# /proc/<pid>/stat counts CPU in clock ticks.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessSample:
    """A server at one instant: monotonic time, CPU seconds used so far, memory in bytes.

    ``memory_bytes``: a local server's PSS summed over its process tree
    (:func:`sample_process`); a remote one's ``process_resident_memory_bytes``
    (:func:`sample_metrics`: the RSS of a one-process server).
    """

    at_s: float
    cpu_s: float
    memory_bytes: int


Probe = Callable[[], ProcessSample | None]


@dataclass(frozen=True)
class Kind:
    """A server variant: the module to run and the environment that selects the variant."""

    name: str
    label: str
    module: str
    environment: Mapping[str, str]


KINDS = {
    "server": Kind("server", "our server (fast backend, coalescing; PROCESSES = cores)", "server", {}),
    "single": Kind("single", "ours in one server process (PROCESSES=1)", "server", {"PROCESSES": "1"}),
    "reference": Kind("reference", "(a) reference backend (zennit / zennit-crp per map)", "server",
                      {"BACKEND": "reference"}),
    "no_coalescing": Kind("no_coalescing", "(b) no coalescing, no micro-batching", "server",
                          {"COALESCE": "false"}),
    "floor": Kind("floor", "(c) floor: same stack, frame-sized reply, no work", "benchmarks.floor_server", {}),
}


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it right after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from ``/proc/<pid>/task/<tid>/children`` (proc(5))."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                pending.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                continue  # the thread or process ended meanwhile
    return found


def _sample_one(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system, all threads) and memory of one process.

    Memory is the proportional set size (``Pss`` of ``smaps_rollup``): pages
    shared by several processes (forked processes share pages)
    are split between them, so a sum over processes counts them once.
    """
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2:].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime: fields 14, 15
    pss_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
                   if line.startswith("Pss:"))
    return cpu_s, pss_kib * 1024


def sample_process(pid: int) -> ProcessSample:
    """CPU and memory (PSS) of ``pid`` and its descendants, summed; a child that ends meanwhile is left out.

    CPU of a child that ended between two samples is lost (it is not counted
    into the parent's until the parent waits for it): a replica's server
    processes live as long as the replica.
    """
    cpu_s, pss_bytes = 0.0, 0
    for process in descendants(pid):
        try:
            cpu, pss = _sample_one(process)
        except (OSError, StopIteration):
            continue
        cpu_s, pss_bytes = cpu_s + cpu, pss_bytes + pss
    return ProcessSample(time.monotonic(), cpu_s, pss_bytes)


def metrics_url(ws_url: str) -> str:
    """``ws://host:port/ws`` → ``http://host:port/metrics`` (wss → https)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}[parts.scheme]
    return urlunsplit((scheme, parts.netloc, "/metrics", "", ""))


def sample_metrics(url: str) -> ProcessSample | None:
    """The ``process_*`` series of a Prometheus endpoint, or ``None`` if it has none."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except urllib.error.URLError:
        return None
    cpu = re.search(r"^process_cpu_seconds_total (\S+)$", text, re.MULTILINE)
    rss = re.search(r"^process_resident_memory_bytes (\S+)$", text, re.MULTILINE)
    if cpu is None or rss is None:
        return None
    return ProcessSample(time.monotonic(), float(cpu.group(1)), int(float(rss.group(1))))


def origin_for(ws_url: str) -> str:
    """The page origin that would open ``ws_url``: same host and port, http(s) scheme."""
    parts = urlsplit(ws_url)
    return f"{ {'ws': 'http', 'wss': 'https'}[parts.scheme] }://{parts.netloc}"


class LocalServer:
    """A server process on loopback, ready once constructed; use as a context manager."""

    def __init__(self, kind: Kind, model: str | None, extra_environment: Mapping[str, str],
                 repo: Path = REPO) -> None:
        """``repo``: the checkout whose code runs (another commit's worktree, to compare against it)."""
        self.kind = kind
        self.port = free_port()
        command = [sys.executable, "-m", kind.module, "--host", "127.0.0.1", "--port", str(self.port)]
        if model is not None and kind.module == "server":
            command += ["--model", model]
        environment = {**os.environ, **extra_environment, **kind.environment}
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{kind.name}-{self.port}.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, cwd=repo, env=environment, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.origin = f"http://127.0.0.1:{self.port}"
        self.wait_ready()

    def wait_ready(self) -> None:
        """Poll ``/readyz`` until 200 (bounded by READY_TIMEOUT_S); fail fast if the process exits."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind.name} exited with {self.process.returncode} before it was "
                                   f"ready; its log: {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass  # not listening yet, or 503 while the model loads: poll again
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"{self.kind.name} not ready within {READY_TIMEOUT_S} s; its log: {self.log_path}")

    def probe(self) -> ProcessSample | None:
        return sample_process(self.process.pid) if self.process.poll() is None else None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S; keep the log unless it exited 0."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self.log.close()
        if self.process.returncode == 0:
            self.log_path.unlink(missing_ok=True)  # kept only when something went wrong, to be read

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def kinds_named(names: Sequence[str]) -> list[Kind]:
    """The kinds called ``names``, in that order; unknown names raise with the known ones."""
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise ValueError(f"unknown server kind(s) {unknown}; known: {sorted(KINDS)}")
    return [KINDS[name] for name in names]
