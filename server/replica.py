"""The server processes of one replica, as each sees the others: status files in a shared directory.

With ``PROCESSES`` > 1, ``python -m server`` runs that many complete servers
on one listening socket (:mod:`server.__main__`).  A visitor's WebSocket and a
probe's ``GET /healthz`` land on any of them, so every process publishes its
own status every ``HEARTBEAT_S`` (one small JSON file, replaced atomically)
and answers the health endpoints for all of them:

* **healthy** (``/healthz``): every live process has published within
  ``STALE_S`` (its event loop runs) and says it can still compute frames;
* **ready** (``/readyz``): healthy, and all ``expected`` processes have
  passed their start-up check.

A process that died is forgotten (its file and its live-gauge metrics
removed) by whichever process notices first; uvicorn's supervisor starts
its replacement.  With one process there is no directory and the status is
the process's own.
"""

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
from prometheus_client import multiprocess

REPLICA_DIR_ENV = "XAI_REPLICA_DIR"  # set by the supervisor for its server processes
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode
HEARTBEAT_S = 1.0
# A process silent this long has a blocked event loop: it cannot send frames.
# Five heartbeats, so that a loaded machine's scheduling hiccup is not taken for one.
STALE_S = 5.0


@dataclass(frozen=True)
class ProcessStatus:
    """What one server process says of itself; ``at``: wall-clock seconds (``time.time()``) of publishing."""

    pid: int
    ready: bool
    healthy: bool
    reason: str
    at: float


@dataclass(frozen=True)
class Verdict:
    """An answer of a health endpoint: ``ok`` (200 or 503) and the reason, for people."""

    ok: bool
    reason: str


class Replica:
    """This process's view of its replica: ``directory`` shared by ``expected`` processes (``None``: alone)."""

    def __init__(self, directory: Path | None, expected: int) -> None:
        self.directory = directory
        self.expected = expected
        self.own = ProcessStatus(os.getpid(), ready=False, healthy=True, reason="starting", at=time.time())

    @classmethod
    def from_env(cls, expected: int) -> "Replica":
        """The replica the supervisor described in the environment, or a replica of one."""
        directory = os.environ.get(REPLICA_DIR_ENV)
        return cls(Path(directory), expected) if directory else cls(None, 1)

    def publish(self, ready: bool, healthy: bool, reason: str) -> None:
        """Record this process's status (and write it for the others)."""
        self.own = ProcessStatus(os.getpid(), ready, healthy, reason, time.time())
        if self.directory is not None:
            path = self.directory / f"status-{self.own.pid}.json"
            scratch = path.with_suffix(".tmp")
            scratch.write_bytes(orjson.dumps(asdict(self.own)))
            scratch.replace(path)  # readers see the old file or the new one, never half of one

    def withdraw(self) -> None:
        """Remove this process from the replica (at shutdown)."""
        if self.directory is not None:
            _forget(self.directory, os.getpid())

    def statuses(self) -> list[ProcessStatus]:
        """The status of every live process of the replica, this one's as it is now."""
        if self.directory is None:
            return [self.own]
        found = {self.own.pid: self.own}
        for path in self.directory.glob("status-*.json"):
            try:
                status = ProcessStatus(**orjson.loads(path.read_bytes()))
            except FileNotFoundError:
                continue  # its process withdrew meanwhile
            if status.pid not in found and _alive(status.pid):
                found[status.pid] = status
            elif status.pid not in found:
                _forget(self.directory, status.pid)
        return sorted(found.values(), key=lambda status: status.pid)

    def health(self) -> Verdict:
        """``/healthz``: every live process publishes and can compute frames."""
        now = time.time()
        for status in self.statuses():
            if status.pid != self.own.pid and now - status.at > STALE_S:
                return Verdict(False, f"server process {status.pid} silent for {now - status.at:.1f} s")
            if not status.healthy:
                return Verdict(False, f"server process {status.pid}: {status.reason}")
        return Verdict(True, "ok")

    def readiness(self) -> Verdict:
        """``/readyz``: healthy, and every expected process passed its start-up check."""
        health = self.health()
        if not health.ok:
            return health
        statuses = self.statuses()
        for status in statuses:
            if not status.ready:
                return Verdict(False, status.reason if len(statuses) == 1 else
                               f"server process {status.pid}: {status.reason}")
        if len(statuses) < self.expected:
            return Verdict(False, f"{len(statuses)} of {self.expected} server processes running")
        return Verdict(True, self.own.reason if len(statuses) == 1 else
                       f"{len(statuses)} server processes ready; {self.own.reason}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists (kill(2))
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user: not one of ours, but not dead either
    return True


def _forget(directory: Path, pid: int) -> None:
    """Drop a process's status file and its live-gauge samples (e.g. open connections)."""
    (directory / f"status-{pid}.json").unlink(missing_ok=True)
    if os.environ.get(METRICS_DIR_ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # prometheus_client has no hints here
