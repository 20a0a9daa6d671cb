"""Start-up and shutdown of one server process: the store loaded once, the engine threads, the readiness check."""

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from torch import nn

from model_store import load_model, model_names, model_record, read_manifest
from model_store.manifest import store_dir_from_env
from model_store.references import References, load_references
from model_store.strokes import load_golden_digits
from server.explain.engine import METHODS
from server.explain.family import FAMILIES, family_of
from server.explain.rules import DEFAULT_RULE

from .catalog import Catalog, MethodInfo, ModelInfo, RuleInfo, model_info
from .counterfactuals import Counterfactuals
from .healing import end_when_unserviceable
from .inference.batcher import Batcher
from .inference.budget import GIL_SWITCH_INTERVAL_S
from .inference.jobs import EngineThreads, Job, Spec
from .logs import event
from .metrics import Metrics
from .protocol import DEFAULT_METHOD, Limits
from .replica import HEARTBEAT_S
from .runtime import Runtime, healthy, publish_own_status
from .session import Services
from .settings import Settings
from .startup import StartupError
from .teaching.database import database_url, open_engine
from .teaching.drawings import DrawingStore
from .teaching.migrate import SchemaOutOfDate, prepare
from .teaching.teacher import Teacher
from .versions import Versions

LAG_PROBE_S = 0.25  # how often the event-loop lag probe wakes up


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Load every model of the store once, start the engine threads, check the golden digits."""
    runtime: Runtime = app.state.runtime
    settings = runtime.settings
    torch.set_num_threads(1)  # see server.inference.jobs.one_torch_thread
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # the loop and frame thread win the GIL back from a slow job
    catalog, models = load_store(settings)
    runtime.references = load_concepts(settings, models)
    runtime.threads = EngineThreads(models, settings.backend, runtime.engine_factory)
    batcher = Batcher(runtime.threads, runtime.metrics, workers=settings.workers,
                      batch_max=settings.batch_max if settings.coalesce else 1,
                      batch_wait_ms=settings.batch_wait_ms if settings.coalesce else 0.0,
                      # a frame, a comparison and a teach per connection, and the start-up check
                      max_jobs=3 * settings.max_connections + 1,
                      deadline_s=settings.compute_deadline_s, fair_share=settings.fair_share,
                      slow_share=settings.slow_share, slow_budget=settings.slow_budget)
    batcher.start()
    limits = Limits(settings.max_points_per_message, settings.max_points, settings.max_strokes)
    counterfactuals = Counterfactuals(models, runtime.digits)
    # Built before the first visitor asks (~0.5 s: the embedded digits and their activations), so that a
    # first counterfactual is not the one that meets the compute deadline.
    await asyncio.to_thread(counterfactuals.prepare)
    database = await open_database(settings)
    versions = Versions(runtime.threads.models,
                        {name: info.sha256 or "unknown" for name, info in catalog.models.items()},
                        {name: info.hidden for name, info in catalog.models.items()})
    teacher = Teacher(DrawingStore(database), batcher, versions)
    runtime.services = Services(settings, catalog, limits, batcher, runtime.metrics, counterfactuals, teacher,
                                versions)
    watcher = asyncio.create_task(versions.watch(settings.model_store_dir, settings.version_poll_s))
    lag_probe = asyncio.create_task(probe_event_loop_lag(runtime.metrics))
    heartbeat = asyncio.create_task(publish_status(runtime))
    healing = asyncio.create_task(end_when_unserviceable(lambda: healthy(runtime), lambda: end_process(runtime),
                                                         HEARTBEAT_S))
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
        healing.cancel()
        watcher.cancel()
        runtime.replica.withdraw()
        for scan in runtime.scans.values():
            scan.cancel()
        await batcher.stop()
        await database.dispose()
        event("server_stopped")


async def open_database(settings: Settings) -> AsyncEngine:
    """The teaching database's engine, its schema current (embedded SQLite: migrated here, under a lock).

    Raises :class:`~server.startup.StartupError` when it cannot be opened or its schema is out of date.
    """
    try:
        url = database_url(settings.database_url, settings.data_dir, settings.database_url_file)
        await asyncio.to_thread(prepare, url)
    except (SchemaOutOfDate, SQLAlchemyError, OSError) as error:
        raise StartupError(f"teaching database: {error}") from error
    return open_engine(url)


def load_store(settings: Settings) -> tuple[Catalog, dict[str, nn.Module]]:
    """The catalog and every model of the store, verified.

    Raises :class:`~server.startup.StartupError` naming the defect (a manifest
    field, a checkpoint, an unknown model): logged as one line, not a traceback.
    """
    try:
        store_dir = settings.model_store_dir or store_dir_from_env()
        models: dict[str, nn.Module] = {name: load_model(name, store_dir) for name in model_names(store_dir)}
        return build_catalog(settings, models), models
    except ValueError as error:  # ModelStoreError included: each names its file, model and field
        raise StartupError(str(error)) from error


def load_concepts(settings: Settings, models: dict[str, nn.Module]) -> dict[str, dict[str, dict[str, References]]]:
    """The verified reference samples of every cnn of the store (served from memory, :mod:`server.neuron_api`)."""
    store_dir = settings.model_store_dir or store_dir_from_env()
    try:
        return {name: load_references(name, store_dir) for name, model in models.items()
                if family_of(model).conv_layers}
    except ValueError as error:  # ModelStoreError: names the file and the defect
        raise StartupError(str(error)) from error


def build_catalog(settings: Settings, loaded: dict[str, nn.Module]) -> Catalog:
    """Models from the store's manifest (each of the family of its ``loaded`` network), methods and rules
    from the engine."""
    store_dir = settings.model_store_dir or store_dir_from_env()
    manifest = read_manifest(store_dir)
    default = settings.model or manifest.get("default")
    models = {name: model_info(model_record(name, store_dir), family_of(model)) for name, model in loaded.items()}
    if default not in models:
        raise ValueError(f"model {default!r} is not in the store at {store_dir}; it holds {', '.join(models)}")
    methods = {name: MethodInfo(name, info.label, info.cost, info.signed, info.control, info.description)
               for name, info in METHODS.items()}
    rules = {name: RuleInfo(name, info.label, info.description)
             for family in FAMILIES.values() for name, info in family.rules.items()}
    if DEFAULT_METHOD not in methods or DEFAULT_RULE not in rules:
        raise ValueError(f"the engine lacks the default method {DEFAULT_METHOD!r} or rule {DEFAULT_RULE!r}")
    return Catalog(default, models, methods, rules)


async def check_golden_digits(batcher: Batcher, models: dict[str, ModelInfo]) -> tuple[bool, str]:
    """Classify every golden digit (drawn as strokes) with each of ``models``; ready only if all are right.

    Every model a visitor may choose is checked: a checkpoint replaced together with its manifest
    entry passes the store's hash check, and only its answers can show that it reads a 7 as a 0.
    """
    golden = load_golden_digits()
    names, failures = list(models), []
    for model, info in models.items():
        spec = (Spec(None, None, DEFAULT_METHOD, info.default_rule),)
        jobs = [Job(model, tuple(tuple(stroke) for stroke in strokes), spec) for strokes in golden.values()]
        # One at a time: the batcher's queue holds one job per visitor, and there are no visitors yet.
        results = [await batcher.compute(job) for job in jobs]
        wrong = [label for label, result in zip(golden, results) if result.frames[0].prediction != label]
        if wrong:
            failures.append(f"model {model!r} misclassifies golden digit(s) {wrong}")
    if failures:
        return False, "; ".join(failures)
    return True, f"models {', '.join(map(repr, names))} classify golden digits {sorted(golden)} correctly"


async def probe_event_loop_lag(metrics: Metrics) -> None:
    """Observe how late a ``LAG_PROBE_S`` sleep wakes up: the time the loop was busy elsewhere."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(LAG_PROBE_S)
        metrics.event_loop_lag_seconds.observe(max(0.0, loop.time() - started - LAG_PROBE_S))


def end_process(runtime: Runtime) -> None:
    """No engine thread is left: this process ends itself, to be replaced (server.healing)."""
    publish_own_status(runtime)  # red at once, for the probes answered while it shuts down
    event("engine_threads_exhausted", logging.ERROR, action="exiting to be replaced",
          deadline_s=runtime.settings.compute_deadline_s)
    runtime.end_process()


async def publish_status(runtime: Runtime) -> None:
    """Publish this process's status every ``HEARTBEAT_S``: a process whose loop stalls goes silent."""
    while True:
        publish_own_status(runtime)
        await asyncio.sleep(HEARTBEAT_S)
