"""The Starlette app: routes, lifespan (models loaded once, readiness check), the ``/ws`` gate.

Routes (docs/protocol.md, "HTTP endpoints"): ``/`` and ``/static`` (the
page), ``/ws`` (one WebSocket per visitor, :mod:`server.session`),
``/healthz``, ``/readyz``, ``/metrics``, ``/api/models`` and
``/api/models/{name}/neurons/{j}``.
"""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from prometheus_client import CONTENT_TYPE_LATEST
from starlette import status
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from torch import nn

from model_store import load_model, model_names, model_record, read_manifest
from model_store.architecture import linear_layer
from model_store.manifest import store_dir_from_env
from model_store.sizes import IMAGE_PX
from model_store.strokes import load_golden_digits
from server.explain.engine import METHODS
from server.explain.rules import RULES

from . import neurons
from .catalog import Catalog, MethodInfo, RuleInfo, model_info
from .counterfactuals import Counterfactuals
from .frames import encode_i8
from .inference.batcher import Batcher
from .inference.jobs import EngineFactory, EngineThreads, InferenceError, Job, Spec, default_engine_factory
from .logs import RateLimitedEvent, event
from .metrics import Metrics, create_metrics
from .origins import origin_allowed
from .protocol import DEFAULT_METHOD, DEFAULT_RULE, Limits
from .replica import HEARTBEAT_S, Replica, Verdict
from .session import Services, Session
from .settings import Settings
from .startup import QuietStartupFailure, StartupError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
LAG_PROBE_S = 0.25  # how often the event-loop lag probe wakes up
REFUSAL_REASONS = ("origin", "not_ready", "capacity")  # label values of xai_rejected_connections_total
NO_ENGINE_THREAD = "every engine thread overran the compute deadline and no more could be replaced"
PLACEHOLDER_PAGE = "<!doctype html><title>xai-live</title><p>The page is not built yet: connect to /ws.</p>"


@dataclass
class Runtime:
    """What the lifespan builds and the routes read; one per app."""

    settings: Settings
    engine_factory: EngineFactory
    metrics: Metrics
    replica: Replica
    services: Services | None = None
    threads: EngineThreads | None = None
    ready: bool = False
    readiness: str = "starting"
    sessions: int = 0
    scans: dict[str, asyncio.Task[neurons.NeuronScan]] = field(default_factory=dict)
    digits: neurons.Digits = field(default_factory=neurons.Digits)
    # A peer can be refused at will: one log line per reason per window, counting the ones left out.
    refusal_logs: dict[str, RateLimitedEvent] = field(default_factory=lambda: {
        reason: RateLimitedEvent("connection_refused", level=logging.INFO) for reason in REFUSAL_REASONS})


def create_app(settings: Settings | None = None, engine_factory: EngineFactory = default_engine_factory) -> Starlette:
    """The app for ``settings`` (default: from the environment).

    ``engine_factory(model, backend)`` builds one engine per worker thread
    and model; tests pass a wrapper to inject inference failures.
    """
    settings = settings or Settings.from_env()
    runtime = Runtime(settings, engine_factory, create_metrics(), Replica.from_env(settings.processes))
    routes = [
        Route("/", homepage),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/api/models", api_models),
        # Plain text, parsed by parse_index: Starlette's ":int" converts any digit run and a 5,001-digit one
        # raises inside the router (Python's int-conversion limit), a 500.
        Route("/api/models/{name}/neurons/{neuron}", api_neuron),
        Route("/api/models/{name}/weights", api_weights),
        WebSocketRoute("/ws", websocket_endpoint),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(QuietStartupFailure)])
    app.state.runtime = runtime
    return app


def _runtime(connection: Request | WebSocket) -> Runtime:
    runtime: Runtime = connection.app.state.runtime
    return runtime


def _services(runtime: Runtime) -> Services:
    """What the lifespan built; routes are served only after it has run."""
    if runtime.services is None or runtime.threads is None:
        raise RuntimeError("the app's lifespan has not started")
    return runtime.services


# Lifespan

@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Load every model of the store once, start the engine threads, check the golden digits."""
    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    torch.set_num_threads(1)  # see server.inference.jobs.one_torch_thread
    catalog, models = load_store(settings)
    runtime.threads = EngineThreads(models, settings.backend, runtime.engine_factory)
    batcher = Batcher(runtime.threads, runtime.metrics, workers=settings.workers,
                      batch_max=settings.batch_max if settings.coalesce else 1,
                      batch_wait_ms=settings.batch_wait_ms if settings.coalesce else 0.0,
                      # a frame and a comparison per connection, and the start-up check
                      max_jobs=2 * settings.max_connections + 1,
                      deadline_s=settings.compute_deadline_s, fair_share=settings.fair_share)
    batcher.start()
    limits = Limits(settings.max_points_per_message, settings.max_points, settings.max_strokes)
    counterfactuals = Counterfactuals(models, runtime.digits)
    # Built before the first visitor asks (~0.5 s: the embedded digits and their activations), so that a
    # first counterfactual is not the one that meets the compute deadline.
    await asyncio.to_thread(counterfactuals.prepare)
    runtime.services = Services(settings, catalog, limits, batcher, runtime.metrics, counterfactuals)
    lag_probe = asyncio.create_task(probe_event_loop_lag(runtime.metrics))
    heartbeat = asyncio.create_task(publish_status(runtime))
    runtime.ready, runtime.readiness = await check_golden_digits(batcher, catalog.models)
    # What start-up built (torch, scikit-learn, captum, models, engines: ~320,000 tracked objects) lives
    # as long as the process: out of the collector's way.  A full collection walks every tracked object
    # with the GIL held (0.4-0.9 s here; one came every ~20 s at 100 visitors), so every visitor of the
    # process waited that long.
    gc.collect()
    gc.freeze()
    publish_own_status(runtime)
    event("server_ready" if runtime.ready else "server_not_ready",
          logging.INFO if runtime.ready else logging.ERROR,
          models=list(catalog.models), backend=settings.backend, workers=settings.workers,
          coalesce=settings.coalesce, readiness=runtime.readiness)
    try:
        yield
    finally:
        lag_probe.cancel()
        heartbeat.cancel()
        runtime.replica.withdraw()
        for scan in runtime.scans.values():
            scan.cancel()
        await batcher.stop()
        event("server_stopped")


def load_store(settings: Settings) -> tuple[Catalog, dict[str, nn.Module]]:
    """The catalog and every model of the store, verified.

    Raises :class:`~server.startup.StartupError` naming the defect (a manifest
    field, a checkpoint, an unknown model): logged as one line, not a traceback.
    """
    try:
        catalog = build_catalog(settings)
        models: dict[str, nn.Module] = {name: load_model(name, settings.model_store_dir) for name in catalog.models}
        return catalog, models
    except ValueError as error:  # ModelStoreError included: each names its file, model and field
        raise StartupError(str(error)) from error


def build_catalog(settings: Settings) -> Catalog:
    """Models from the store's manifest, methods and rules from the engine."""
    store_dir = settings.model_store_dir or store_dir_from_env()
    manifest = read_manifest(store_dir)
    default = settings.model or manifest.get("default")
    models = {name: model_info(model_record(name, store_dir)) for name in model_names(store_dir)}
    if default not in models:
        raise ValueError(f"model {default!r} is not in the store at {store_dir}; it holds {', '.join(models)}")
    methods = {name: MethodInfo(name, info.label, info.cost, info.signed) for name, info in METHODS.items()}
    rules = {name: RuleInfo(name, info.label, info.description) for name, info in RULES.items()}
    if DEFAULT_METHOD not in methods or DEFAULT_RULE not in rules:
        raise ValueError(f"the engine lacks the default method {DEFAULT_METHOD!r} or rule {DEFAULT_RULE!r}")
    return Catalog(default, models, methods, rules)


async def check_golden_digits(batcher: Batcher, models: Iterable[str]) -> tuple[bool, str]:
    """Classify every golden digit (drawn as strokes) with each of ``models``; ready only if all are right.

    Every model a visitor may choose is checked: a checkpoint replaced together with its manifest
    entry passes the store's hash check, and only its answers can show that it reads a 7 as a 0.
    """
    golden = load_golden_digits()
    spec = (Spec(None, None, DEFAULT_METHOD, DEFAULT_RULE),)
    names, failures = list(models), []
    for model in names:
        jobs = [Job(model, tuple(tuple(stroke) for stroke in strokes), spec) for strokes in golden.values()]
        # One at a time: the batcher's queue holds one job per visitor, and there are no visitors yet.
        results = [await batcher.compute(job) for job in jobs]
        wrong = [label for label, result in zip(golden, results) if result.frames[0].prediction != label]
        if wrong:
            failures.append(f"model {model!r} misclassifies golden digit(s) {wrong}")
    if failures:
        return False, "; ".join(failures)
    return True, f"models {', '.join(map(repr, names))} classify golden digits {sorted(golden)} correctly"


def readiness(runtime: Runtime) -> tuple[bool, str]:
    """Whether the server can serve visitors now, and why (the text of ``/readyz``)."""
    if not healthy(runtime):
        return False, NO_ENGINE_THREAD
    return runtime.ready, runtime.readiness


def healthy(runtime: Runtime) -> bool:
    """Whether this process can still compute frames: some engine thread is left (server.inference.workers)."""
    return runtime.services is None or runtime.services.batcher.serving


async def probe_event_loop_lag(metrics: Metrics) -> None:
    """Observe how late a ``LAG_PROBE_S`` sleep wakes up: the time the loop was busy elsewhere."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        metrics.event_loop_lag_seconds.observe(max(0.0, loop.time() - started - LAG_PROBE_S))


def publish_own_status(runtime: Runtime) -> None:
    """Tell the replica whether this process is ready and can compute frames."""
    ready, reason = readiness(runtime)
    runtime.replica.publish(ready, healthy=healthy(runtime), reason=reason)


async def publish_status(runtime: Runtime) -> None:
    """Publish this process's status every ``HEARTBEAT_S``: a process whose loop stalls goes silent."""
    while True:
        publish_own_status(runtime)
        await asyncio.sleep(HEARTBEAT_S)


# HTTP routes

async def homepage(request: Request) -> Response:
    index = STATIC_DIR / "index.html"
    return FileResponse(index) if index.is_file() else HTMLResponse(PLACEHOLDER_PAGE)


async def healthz(request: Request) -> Response:
    """200 while every process of the replica can compute frames (server.replica)."""
    runtime = _runtime(request)
    publish_own_status(runtime)
    return _verdict_response(runtime.replica.health())


async def readyz(request: Request) -> Response:
    """200 once every process of the replica passed its start-up check, while all stay healthy."""
    runtime = _runtime(request)
    publish_own_status(runtime)
    return _verdict_response(runtime.replica.readiness())


def _verdict_response(verdict: Verdict) -> Response:
    code = status.HTTP_200_OK if verdict.ok else status.HTTP_503_SERVICE_UNAVAILABLE
    return PlainTextResponse(verdict.reason, status_code=code)


async def metrics_endpoint(request: Request) -> Response:
    return Response(_runtime(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def api_models(request: Request) -> Response:
    services = _services(_runtime(request))
    catalog = services.catalog
    return JSONResponse({
        "default": services.settings.model or catalog.default_model,
        "models": [{"name": info.name, "hidden": info.hidden, "layers": list(info.layers),
                    "val_accuracy": info.val_accuracy, "test_accuracy": info.test_accuracy, "sha256": info.sha256}
                   for info in catalog.models.values()],
    })


async def api_neuron(request: Request) -> Response:
    runtime = _runtime(request)
    name, text = request.path_params["name"], request.path_params["neuron"]
    models = _services(runtime).catalog.models
    neuron = parse_index(text, models[name].hidden) if name in models else None
    if neuron is None:
        return JSONResponse({"error": f"no hidden neuron {text[:12]!r} in model {name[:40]!r}"},
                            status_code=status.HTTP_404_NOT_FOUND)
    try:
        scan = await neuron_scan(runtime, name)
    except InferenceError as error:  # a deadline passed, or no engine thread is left: try again later
        return JSONResponse({"error": f"the neuron card could not be computed ({error.error_type})"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    images, labels = runtime.digits.get()
    return JSONResponse(neurons.card(name, neuron, scan, images, labels))


def parse_index(text: str, size: int) -> int | None:
    """``text`` as an index in ``0..size-1`` (ASCII digits only), else ``None``.

    The length is checked before converting, so no client string reaches
    ``int()`` with more digits than ``size`` has.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(size)):
        return None
    index = int(text)
    return index if index < size else None


async def api_weights(request: Request) -> Response:
    """Every hidden neuron's weight template ``W1[j]`` at once, for the page's diagram (docs/protocol.md)."""
    runtime = _runtime(request)
    name = request.path_params["name"]
    if name not in _services(runtime).catalog.models:
        return JSONResponse({"error": f"no model {name[:40]!r}"}, status_code=status.HTTP_404_NOT_FOUND)
    first_layer = linear_layer(_engines(runtime).models[name], "fc1")
    weights = first_layer.weight.detach().numpy()
    return JSONResponse({"model": name, "weights": encode_i8(weights.reshape(-1, IMAGE_PX, IMAGE_PX))})


async def neuron_scan(runtime: Runtime, model: str) -> neurons.NeuronScan:
    """The cached scan of ``model``; the first request starts it on an engine thread, others await it.

    A scan that failed is started again by the next request rather than cached.
    """
    scan = runtime.scans.get(model)
    if scan is None or (scan.done() and (scan.cancelled() or scan.exception() is not None)):
        scan = asyncio.create_task(_scan(runtime, model))
        runtime.scans[model] = scan
    return await asyncio.shield(scan)  # a visitor hanging up must not cancel the scan others wait for


async def _scan(runtime: Runtime, model: str) -> neurons.NeuronScan:
    """Scan the digits chunk by chunk on engine threads, each chunk one call within the compute deadline."""
    batcher = _services(runtime).batcher
    images, _ = await batcher.call(runtime.digits.get)  # the first load reads a file (~0.3 s)
    parts = [await batcher.call(_scan_chunk_on_thread, runtime, model, chunk) for chunk in neurons.scan_chunks(images)]
    first_layer = linear_layer(_engines(runtime).models[model], "fc1")
    return neurons.scan(parts, first_layer.weight.detach().numpy())


def _engines(runtime: Runtime) -> EngineThreads:
    if runtime.threads is None:
        raise RuntimeError("the app's lifespan has not started")
    return runtime.threads


def _scan_chunk_on_thread(runtime: Runtime, model: str, images: np.ndarray) -> neurons.ScanPart:
    return neurons.scan_chunk(_engines(runtime).engine(model), images)


# The WebSocket gate

def refuse(runtime: Runtime, reason: str, **fields: int) -> None:
    """Count a refused WebSocket in the metrics (every one) and the log (rate-limited)."""
    runtime.metrics.rejected_connections.labels(reason).inc()
    runtime.refusal_logs[reason](reason=reason, **fields)


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Check the Origin (403 before accept), then readiness and capacity (1013 after accept), then serve."""
    runtime = _runtime(websocket)
    settings = runtime.settings
    if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"),
                          websocket.url.scheme == "wss", settings.allowed_origins):
        refuse(runtime, "origin")
        await websocket.send_denial_response(PlainTextResponse("origin not allowed",
                                                               status_code=status.HTTP_403_FORBIDDEN))
        return
    if not readiness(runtime)[0]:
        # Accepted, then closed: a browser sees a close code and reason, never a bare failed handshake.
        refuse(runtime, "not_ready")
        await websocket.accept()
        await websocket.close(status.WS_1013_TRY_AGAIN_LATER, "server not ready")
        return
    over_capacity = runtime.sessions >= settings.max_connections
    if not over_capacity:
        runtime.sessions += 1  # reserved before the first await, so two newcomers cannot both pass
    try:
        await websocket.accept()
        if over_capacity:
            refuse(runtime, "capacity", open=runtime.sessions)
            await websocket.close(status.WS_1013_TRY_AGAIN_LATER, "server at capacity")
            return
        await Session(websocket, _services(runtime)).run()
    finally:
        if not over_capacity:
            runtime.sessions -= 1
