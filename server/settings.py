"""Every knob of the server, read once from the environment, with its unit and default.

``Settings.from_env()`` reads the variables named in upper case after each
field (``MAX_MESSAGE_BYTES`` → ``max_message_bytes``); an unset or empty
variable keeps the default.  A value that does not parse, or lies outside its
range, raises :class:`SettingsError` naming the variable, so a typo in a
deployment fails at start-up instead of running with a surprising limit.
"""

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .cores import usable_cores
from .protocol import Limits

DRAWING_LIMITS = Limits()  # their defaults are written once, in server.protocol
SELF_ORIGIN = "self"
DEFAULT_ALLOWED_ORIGINS = (SELF_ORIGIN, "http://localhost:*", "http://127.0.0.1:*")
BACKENDS = ("fast", "reference")
LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """An environment variable could not be read as its setting."""


@dataclass(frozen=True)
class Settings:
    """The server's configuration; every field has a documented unit and default.

    Connection
        host, port: where uvicorn listens (port 0: any free port).
        forwarded_allow_ips: comma list of proxy addresses whose
            ``X-Forwarded-*`` headers are trusted (uvicorn's option), e.g. the
            nginx container; empty: trust none.
        allowed_origins: ``Origin`` values allowed to open ``/ws``. ``self``
            means the origin the request was addressed to (its ``Host``
            header, scheme from the request); ``http://host:*`` allows any port.
            Anything else gets HTTP 403 before the WebSocket exists.
        max_connections: open WebSockets; the next one is closed with 1013.
    Models
        model: the name served to new visitors (``None``: the store's default).
        model_store_dir: the store directory (``None``: ``MODEL_STORE_DIR`` or
            the shipped store).
        backend: the engine backend, ``fast`` (closed form) or ``reference``
            (zennit / zennit-crp hooks; the benchmark baseline).
    Input limits (per visitor)
        max_message_bytes: one WebSocket message, bytes; bigger → close 1009.
        max_points_per_message, max_points, max_strokes: drawing size limits.
        max_messages_per_s: token bucket refilled at this rate, holding one
            second of messages; a message beyond it is refused ``rate_limited``.
        max_errors: refused messages tolerated within ``error_window_s``; one
            more closes the connection with 1008.
    Timing
        max_frames_per_s: frames sent per visitor per second, at most.
        pause_ms: stillness (no stroke) after which on-pause methods run, ms.
        idle_timeout_s: no client message for this long → close 1000, s.
        ping_interval_s, ping_timeout_s: WebSocket keepalive (RFC 6455 §5.5.2), s.
        send_timeout_s: a message not written within this → the visitor is
            released (a client that stopped reading), s.
        header_timeout_s: a request whose HTTP headers are not complete this
            long after the connection opened (or after its first byte, on a
            kept-alive connection) has its connection closed, s
            (:mod:`server.httpprotocol`).
        body_timeout_s: a request whose body is not complete this long after
            its headers has its connection closed, s (``Content-Length:
            100000`` sent at a byte a second held a connection open for good).
        shutdown_grace_s: on SIGTERM, visitors get 1012 and the process exits
            within this, s; below docker compose's default stop timeout (10 s).
        max_unhealthy_s: a replica whose ``/healthz`` stays red this long
            without a break exits (status 4) to be replaced, s
            (``PROCESSES`` > 1: the supervisor watches; :mod:`server.healing`).
    Processes
        processes: complete server processes sharing the listening socket
            (``python -m server`` only; default: the cores this process may
            use, its CPU affinity capped by a container's CPU quota,
            :mod:`server.cores`).  Each has its own event loop, GIL and engine threads.
    Inference
        workers: frame threads per server process, at most the number of
            cores (each holds its own engines; default 1: the cores are used
            by ``processes``, and threads of one process share its GIL).
        batch_max: frames of different visitors computed as one engine call.
        batch_wait_ms: how long a batch waits for more frames once one is due, ms
            (0: a free worker takes what is queued at once).
        compute_deadline_s: one engine call (a batch of frames, one map of a
            comparison, a chunk of a neuron scan) not done within this fails,
            and its thread is replaced (server.inference.workers), s.  The
            slowest legitimate call measured here, on a loaded 2-core machine,
            was ~0.6 s (the reference backend: a batch of 16 frames, or LIME):
            the default is 5× that, and well below the page's patience.
        fair_share: engine-thread time a heavy visitor's live frames may
            use, seconds per second (1 = a whole thread); above it, its next
            frame waits (server.inference.usage: heavy is a visitor whose
            rasters keep drawing far more than a digit's).  A visitor drawing
            a digit at 60 frames/s uses 0.02–0.05 (0.3–0.9 ms of CPU a frame
            on this machine, batched or alone) and is never heavy; the
            default holds a heavy one (its frames ~3 ms, computed alone) to
            ~7 frames/s.  0.1, the first default, stopped binding once a
            redraw got cheap (solid pen, December 2026): three heavy visitors
            then kept 60 frames/s and raised a bystander's p99 1.6×.
        coalesce: ``True``: latest-wins frames and micro-batching. ``False``:
            the naive baseline, one frame per input message in order, batches
            of one (benchmark baseline (b)).
    Teaching (docs/protocol.md, "teach")
        data_dir: where the embedded SQLite database lives (created if missing).
        database_url: a SQLAlchemy async URL (``postgresql+asyncpg://…``);
            empty: SQLite (WAL) in ``data_dir``.
        database_url_file: a file holding that URL (a secret: it carries the
            database password); read when ``database_url`` is empty.
        max_teach_per_minute: ``teach`` messages one visitor may send per
            minute (a burst of that many at once); beyond: ``rate_limited``.
        version_poll_s: how often the store's manifest is read for a newly
            promoted version of a served model (``server.versions``), s.
    Curation (``/learn``, docs/curation.md)
        curator_password: the curator's password (empty: see the next two);
            hashed with argon2 at start-up, never stored or logged.
        curator_password_file: a file holding it (a Docker or Kubernetes secret).
        curator_password_hash: an argon2 hash of it instead (``$argon2id$…``).
            None of the three: nobody can log in, ``/learn`` stays closed.
        curator_session_secret_file: the key signing session cookies, shared
            by every process and replica (default: ``curator-session.key`` in
            ``data_dir``, created on first use).
        curator_session_s: a login lasts this long, s.
        curator_max_failed_logins: failed logins (wrong password or bad form)
            per client address within ``curator_lockout_s``; past it, POSTs to
            ``/learn/login`` get 429 until the window has passed.
    Logging
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    forwarded_allow_ips: str = ""
    allowed_origins: tuple[str, ...] = DEFAULT_ALLOWED_ORIGINS
    max_connections: int = 200
    model: str | None = None
    model_store_dir: Path | None = None
    backend: str = "fast"
    max_message_bytes: int = 65536
    max_points_per_message: int = DRAWING_LIMITS.max_points_per_message
    max_points: int = DRAWING_LIMITS.max_points
    max_strokes: int = DRAWING_LIMITS.max_strokes
    max_messages_per_s: int = 240
    max_errors: int = 20
    error_window_s: float = 10.0
    max_frames_per_s: float = 60.0
    pause_ms: float = 150.0
    idle_timeout_s: float = 600.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    send_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    shutdown_grace_s: float = 5.0
    max_unhealthy_s: float = 30.0
    processes: int = field(default_factory=usable_cores)
    # One frame thread: a second one in the same process only contends for its GIL (two processes on
    # 2 cores, 50 visitors drawing continuously: p99 11-29 ms with two, 6-14 ms with one; docs/benchmarks.md).
    workers: int = 1
    batch_max: int = 16
    batch_wait_ms: float = 0.0
    compute_deadline_s: float = 3.0
    fair_share: float = 0.02
    coalesce: bool = True
    data_dir: Path = Path("data")
    database_url: str = field(default="", repr=False)
    database_url_file: Path | None = None
    max_teach_per_minute: int = 20
    version_poll_s: float = 10.0
    curator_password: str = field(default="", repr=False)
    curator_password_file: Path | None = None
    curator_password_hash: str = field(default="", repr=False)
    curator_session_secret_file: Path | None = None
    curator_session_s: float = 8 * 3600.0
    curator_max_failed_logins: int = 5
    curator_lockout_s: float = 900.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_message_bytes", "max_points_per_message", "max_points",
                     "max_strokes", "max_messages_per_s", "max_teach_per_minute", "curator_max_failed_logins",
                     "processes", "workers", "batch_max"):
            _require(name, getattr(self, name) >= 1, ">= 1")
        for name in ("max_errors", "batch_wait_ms", "pause_ms"):
            _require(name, getattr(self, name) >= 0, ">= 0")
        for name in ("error_window_s", "max_frames_per_s", "idle_timeout_s", "ping_interval_s",
                     "ping_timeout_s", "send_timeout_s", "header_timeout_s", "body_timeout_s",
                     "shutdown_grace_s", "max_unhealthy_s", "compute_deadline_s", "fair_share",
                     "curator_session_s", "curator_lockout_s", "version_poll_s"):
            _require(name, getattr(self, name) > 0, "> 0")
        _require("port", 0 <= self.port <= 65535, "in 0..65535")
        # More engine threads than cores only adds contention (each runs torch with one thread).
        _require("workers", self.workers <= (os.cpu_count() or 1), f"at most the {os.cpu_count()} cores")
        _require("backend", self.backend in BACKENDS, f"one of {BACKENDS}")
        _require("log_level", self.log_level in LOG_LEVELS, f"one of {LOG_LEVELS}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``), then ``overrides`` by field name."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            raw = environ.get(spec.name.upper(), "").strip()
            if raw:
                values[spec.name] = _parse(spec.name, spec.type, raw)
        return cls(**{**values, **overrides})

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def _require(name: str, ok: bool, expected: str) -> None:
    if not ok:
        raise SettingsError(f"setting {name.upper()} must be {expected}")


def _parse(name: str, kind: Any, raw: str) -> Any:
    """Read the text ``raw`` of variable ``name`` as the field type ``kind``."""
    try:
        if kind in (int, "int"):
            return int(raw)
        if kind in (float, "float"):
            return float(raw)
        if kind in (bool, "bool"):
            return _parse_bool(raw)
        if kind in (tuple[str, ...], "tuple[str, ...]"):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if kind in (Path | None, "Path | None", Path, "Path"):
            return Path(raw)
        return raw
    except ValueError as error:
        raise SettingsError(f"{name.upper()}={raw!r}: {error}") from error


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false, 1/0, yes/no or on/off")
