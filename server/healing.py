"""Self-healing: a server process that cannot compute frames ends itself; a replica red too long exits.

Two rules, so that no operator is needed (docs/architecture.md, "Self-healing"):

* **A process with no engine thread left exits.**  Once every frame thread
  has overrun the compute deadline and none could be replaced
  (:mod:`server.inference.workers`), the process can only answer 1011.  It
  notices within ``HEARTBEAT_S``, logs ``engine_threads_exhausted`` at ERROR
  and sends itself SIGTERM: uvicorn closes its visitors with 1012 within
  ``SHUTDOWN_GRACE_S`` and the process exits (killed by SIGTERM: status 143
  in a shell).  With ``PROCESSES`` > 1, uvicorn's supervisor starts a fresh
  process in its place; with one, the container's restart policy does
  (compose ``restart:``, Swarm, Kubernetes).  The hung threads go with the
  process: a Python thread cannot be stopped any other way.
* **A replica red past ``MAX_UNHEALTHY_S`` exits.**  The supervisor
  (``PROCESSES`` > 1) reads the replica's health from the status files every
  ``HEARTBEAT_S``; red without a break for ``MAX_UNHEALTHY_S`` (a process
  whose event loop stalls but still answers uvicorn's pings, a replacement
  that keeps failing), it logs ``replica_unhealthy_exiting`` and stops with
  status :data:`UNHEALTHY_EXIT`, so that the orchestrator replaces the
  whole replica.  Docker compose does not restart a container that is only
  *unhealthy*; it does restart one that exited.
"""

import asyncio
import os
import signal
from collections.abc import Callable

UNHEALTHY_EXIT = 4  # exit status of a replica that stayed unhealthy past MAX_UNHEALTHY_S


def terminate_self() -> None:
    """Ask this process to shut down as on ``docker stop``: uvicorn's SIGTERM handler closes visitors 1012."""
    os.kill(os.getpid(), signal.SIGTERM)


async def end_when_unserviceable(serving: Callable[[], bool], end: Callable[[], None], interval_s: float) -> None:
    """Call ``end()`` once ``serving()`` is false, checked every ``interval_s``."""
    while serving():
        await asyncio.sleep(interval_s)
    end()


class RedSpell:
    """How long a health verdict has been red without a break; the clock (seconds) is the caller's."""

    def __init__(self, bound_s: float) -> None:
        self.bound_s = bound_s
        self.since: float | None = None

    def observe(self, ok: bool, now: float) -> bool:
        """Record the verdict at ``now``; ``True`` once red has lasted ``bound_s``."""
        if ok:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.bound_s
