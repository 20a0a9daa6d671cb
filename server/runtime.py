"""What one server process's app holds at run time, and whether it can serve: the routes' shared state."""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.websockets import WebSocket

from model_store.references import References

from . import neurons
from .healing import terminate_self
from .inference.jobs import EngineFactory, EngineThreads
from .logs import RateLimitedEvent
from .metrics import Metrics
from .replica import Replica
from .session import Services
from .settings import Settings

REFUSAL_REASONS = ("origin", "not_ready", "capacity")  # label values of xai_rejected_connections_total
NO_ENGINE_THREAD = "every engine thread overran the compute deadline and no more could be replaced"


@dataclass
class Runtime:
    """What the lifespan builds and the routes read; one per app."""

    settings: Settings
    engine_factory: EngineFactory
    metrics: Metrics
    replica: Replica
    # How this process ends itself once it cannot compute frames (server.healing); tests stop their server.
    end_process: Callable[[], None] = terminate_self
    services: Services | None = None
    threads: EngineThreads | None = None
    ready: bool = False
    readiness: str = "starting"
    sessions: int = 0
    scans: dict[str, asyncio.Task[neurons.NeuronScan]] = field(default_factory=dict)
    digits: neurons.Digits = field(default_factory=neurons.Digits)
    # A cnn's reference samples ({model: {layer: {kind: References}}}), loaded once at start-up.
    references: dict[str, dict[str, dict[str, References]]] = field(default_factory=dict)
    # A peer can be refused at will: one log line per reason per window, counting the ones left out.
    refusal_logs: dict[str, RateLimitedEvent] = field(default_factory=lambda: {
        reason: RateLimitedEvent("connection_refused", level=logging.INFO) for reason in REFUSAL_REASONS})


def runtime_of(connection: Request | WebSocket) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime


def services_of(runtime: Runtime) -> Services:
    """What the lifespan built; routes are served only after it has run."""
    if runtime.services is None or runtime.threads is None:
        raise RuntimeError("the app's lifespan has not started")
    return runtime.services


def engines_of(runtime: Runtime) -> EngineThreads:
    if runtime.threads is None:
        raise RuntimeError("the app's lifespan has not started")
    return runtime.threads


def readiness(runtime: Runtime) -> tuple[bool, str]:
    """Whether the server can serve visitors now, and why (the text of ``/readyz``)."""
    if not healthy(runtime):
        return False, NO_ENGINE_THREAD
    return runtime.ready, runtime.readiness


def healthy(runtime: Runtime) -> bool:
    """Whether this process can still compute frames: some engine thread is left (server.inference.workers)."""
    return runtime.services is None or runtime.services.batcher.serving


def publish_own_status(runtime: Runtime) -> None:
    """Tell the replica whether this process is ready and can compute frames."""
    ready, reason = readiness(runtime)
    runtime.replica.publish(ready, healthy=healthy(runtime), reason=reason)
