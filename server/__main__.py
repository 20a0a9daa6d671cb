"""``python -m server [--host H] [--port P] [--model NAME]``: serve the app with uvicorn.

``python -m server migrate``: bring the teaching database (``DATABASE_URL``,
default SQLite in ``DATA_DIR``) to the newest schema and exit
(:mod:`server.teaching.migrate`); a deployment runs it once before its servers.

Every other setting comes from the environment (:mod:`server.settings`); the
three options override ``HOST``, ``PORT`` and ``MODEL``.  Once listening, the
process logs one ``listening`` event with the bound address (port 0 picks a
free port; tests read it from there).

With ``PROCESSES`` > 1 (default: the usable cores) this process binds the
socket and becomes a supervisor (uvicorn's ``Multiprocess``): it starts that
many complete servers, each accepting on the shared socket with its own
event loop, GIL and engine threads, restarts one that dies or stops
answering its pings, and on SIGTERM passes the signal on to each, which
closes its visitors with 1012 within ``SHUTDOWN_GRACE_S``.  The servers
share a directory for their status and metrics (:mod:`server.replica`).

Self-healing (:mod:`server.healing`): a server process with no engine thread
left exits and the supervisor starts a fresh one; a replica whose health
stays red for ``MAX_UNHEALTHY_S`` exits with status 4, so that the
orchestrator replaces it.

Exit status: 2 for a bad setting (one line on stderr); 4 for a replica that
stayed unhealthy (above); 3 when the server cannot start: a model store defect, an unknown model or an address in use,
found before any server process starts (one ``startup_failed`` log line
naming the cause), or tensors that do not fit the manifest, found by each
server process (one such line from each; never a traceback, see
:mod:`server.startup`).
"""

import argparse
import logging
import logging.config
import os
import socket
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from model_store.manifest import ModelStoreError, verify_files

from .healing import UNHEALTHY_EXIT, RedSpell
from .httpprotocol import RequestTimeoutProtocol
from .logs import event, log_config
from .replica import HEARTBEAT_S, METRICS_DIR_ENV, REPLICA_DIR_ENV, Replica
from .settings import Settings, SettingsError
from .wsprotocol import STACK_OPTIONS

APP_FACTORY = "server.app:create_app"  # what each server process imports (spawned: nothing is inherited)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="address to listen on (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on, 0 for any free one (env PORT, default 8000)")
    parser.add_argument("--model", help="model served to new visitors (env MODEL, default: the store's default)")
    return parser.parse_args(argv)


def uvicorn_config(app: Starlette | str, settings: Settings, configure_logging: bool = True) -> uvicorn.Config:
    """The uvicorn configuration of ``settings``: WebSocket limits, keepalive, shutdown grace, proxies.

    ``app``: the app, or the import string of its factory (for server processes).
    ``configure_logging=False`` leaves the process's logging alone (an app run inside a test process).
    """
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=settings.processes if isinstance(app, str) else None,
        host=settings.host,
        port=settings.port,
        **{**STACK_OPTIONS, "http": partial(RequestTimeoutProtocol, header_timeout_s=settings.header_timeout_s,
                                            body_timeout_s=settings.body_timeout_s)},
        ws_max_size=settings.max_message_bytes,  # bigger messages: close 1009 (RFC 6455 §7.4.1)
        ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        # uvicorn waits this long with asyncio.wait_for, so seconds with a fraction work; its hint says int
        timeout_graceful_shutdown=settings.shutdown_grace_s,  # type: ignore[arg-type]
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        log_config=log_config(settings.log_level) if configure_logging else None,
        log_level=settings.log_level,
        access_log=False,
    )


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: the kernel picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["migrate"]:
        from .teaching.migrate import main as migrate

        return migrate(argv[1:])
    arguments = parse_arguments(argv)
    overrides = {name: value for name, value in vars(arguments).items() if value is not None}
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.config.dictConfig(log_config(settings.log_level))
    try:
        # Manifest, model name, checkpoint paths, sizes and hashes, without torch: a broken store
        # stops the supervisor before any server process starts (the tensors are checked by each).
        verify_files(settings.model, settings.model_store_dir)
    except ModelStoreError as error:
        event("startup_failed", logging.ERROR, error=str(error))
        return STARTUP_FAILURE
    try:
        sock = bind(settings.host, settings.port)
    except OSError as error:
        event("startup_failed", logging.ERROR, host=settings.host, port=settings.port,
              error=f"cannot listen: {error.strerror or error}")
        return STARTUP_FAILURE
    host, port = sock.getsockname()[:2]
    # Bound before uvicorn starts, so the port is known even when it was 0; /readyz says when it serves.
    event("listening", host=host, port=port, processes=settings.processes)
    if settings.processes == 1:
        from .app import create_app  # here: a supervisor needs neither torch nor the models (~270 MB)

        uvicorn.Server(uvicorn_config(create_app(settings), settings)).run(sockets=[sock])
        return 0
    return supervise(settings, overrides, sock)


def supervise(settings: Settings, overrides: dict[str, str], sock: socket.socket) -> int:
    """Run ``settings.processes`` server processes on ``sock`` until SIGTERM or SIGINT; return the exit status.

    uvicorn's supervisor stops once a process exits with ``STARTUP_FAILURE``
    (it would fail the same way on every restart); so does this process, with that status.
    It stops too, with ``UNHEALTHY_EXIT``, once the replica's health stays red for ``max_unhealthy_s``.
    """
    with tempfile.TemporaryDirectory(prefix="xai-replica-") as shared:
        # The server processes read their settings from the environment, as this one did.
        os.environ.update({name.upper(): str(value) for name, value in overrides.items()})
        os.environ["PROCESSES"] = str(settings.processes)
        os.environ[REPLICA_DIR_ENV] = shared
        os.environ[METRICS_DIR_ENV] = str(Path(shared, "metrics"))
        Path(shared, "metrics").mkdir()
        supervisor = Multiprocess(uvicorn_config(APP_FACTORY, settings), sockets=[sock])
        unhealthy = threading.Event()
        threading.Thread(target=watch_replica, name="replica-watch", daemon=True,
                         args=(Replica(Path(shared), settings.processes), settings.max_unhealthy_s,
                               supervisor.should_exit, unhealthy)).start()
        supervisor.run()
    if unhealthy.is_set():
        return UNHEALTHY_EXIT
    return STARTUP_FAILURE if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes) else 0


def watch_replica(replica: Replica, bound_s: float, stop: threading.Event, unhealthy: threading.Event) -> None:
    """Every ``HEARTBEAT_S`` until ``stop``: once ``replica``'s health has been red for ``bound_s`` without a
    break, set ``unhealthy`` and ``stop`` (the supervisor then ends its processes and exits)."""
    spell = RedSpell(bound_s)
    while not stop.wait(HEARTBEAT_S):
        verdict = replica.health()
        if spell.observe(verdict.ok, time.monotonic()):
            event("replica_unhealthy_exiting", logging.ERROR, unhealthy_s=bound_s, reason=verdict.reason)
            unhealthy.set()
            stop.set()
            return


if __name__ == "__main__":
    sys.exit(main())
