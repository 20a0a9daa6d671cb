"""Jobs and the engine call: what a visitor asks to be computed, and the call that computes a list of them.

A :class:`Job` is one visitor's drawing and the maps wanted for it;
:meth:`EngineThreads.run` computes a list of jobs with one engine call per
model, on the calling (worker) thread, and encodes each job's message there
too (its ``render``).  Each worker thread owns one engine per model, built on
first use: captum and the reference backend attach hooks to its model, which
must never be shared between threads.  The engines of one model share their
read-only tensors (:func:`default_engine_factory`).
"""

import dataclasses
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from server.explain.engine import Engine, FrameData, Request, Selection
from server.explain.family import family_of
from server.explain.sanity import Sanity
from server.photo import model_input
from server.protocol import DEFAULT_METHOD
from server.raster import RasterCache

EngineFactory = Callable[[nn.Module, str], Any]


@dataclass(frozen=True)
class Spec:
    """One map to compute for a job's drawing: the selection, method and rule.

    ``heatmap=False`` skips the method's heatmap (an on-pause method while the
    visitor draws): the engine returns every other number, in mode
    ``attribution`` with an all-zero heatmap, and the frame says ``pending``.
    ``layer``: where ``hidden`` is (``None``: ``fc1``; a conv layer of a cnn).
    """

    output: int | None
    hidden: int | None
    method: str
    rule: str | None  # None: the model's default preset
    heatmap: bool = True
    versus: int | None = None
    knockout: tuple[int, ...] = ()
    layer: str | None = None

    def request(self, image: np.ndarray) -> Request:
        """The engine request of this spec for ``image``."""
        return Request(image, Selection(self.output, self.hidden, self.versus, self.layer), method=self.method,
                       rule=self.rule, knockout=self.knockout, heatmap=self.heatmap)


@dataclass(frozen=True)
class JobResult:
    """``image``: the ``(28, 28)`` float32 model input; ``frames``: one per spec; ``compute_ms``: the batch's time.

    ``cost_s``: the engine-thread CPU time this job took: its rasterising and encoding, and its share of
    the batch's engine call (what the fair share counts, :mod:`server.inference.usage`);
    ``raster_work_px``: how much its raster drew (``RasterCache.work_px``; 0 without a raster cache).

    ``text``: what the job's ``render`` made of this result, if it has one.
    ``sanity``: one report per spec of a sanity job.
    """

    image: np.ndarray
    frames: list[FrameData]
    compute_ms: float
    text: str | None = None
    sanity: list[Sanity] = dataclasses.field(default_factory=list)
    cost_s: float = 0.0
    raster_work_px: float = 0.0


@dataclass(frozen=True)
class Job:
    """A drawing of one visitor and the maps wanted for it, on model ``model``.

    ``strokes``: tuples of ``(x, y)`` canvas fractions, already validated.
    ``render``: called with the result on the engine thread, its return value
    becomes ``JobResult.text``: the message is encoded there, so that the event
    loop never runs numpy (each numpy call may hand the GIL to an engine
    thread, and taking it back can wait for that thread's switch interval).
    ``sanity``: compute each spec's sanity checks (``Engine.sanity``) as well.
    ``owner``: the visitor (its fair share); ``raster``: the visitor's raster
    cache, for its live frames only (one job at a time may use it).
    ``photo``: the model's input from a photo (784 bytes), used instead of ``strokes``.
    """

    model: str
    strokes: tuple[tuple[tuple[float, float], ...], ...]
    specs: tuple[Spec, ...]
    render: Callable[[JobResult], str] | None = None
    sanity: bool = False
    owner: int = 0
    raster: RasterCache | None = None
    photo: bytes | None = None


DEADLINE_EXCEEDED = "DeadlineExceeded"  # the error_type of a call that overran the compute deadline


class InferenceError(RuntimeError):
    """Computing a job failed; ``error_type`` names the exception raised in the engine thread."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def as_inference_error(error: Exception) -> InferenceError:
    """``error`` as the :class:`InferenceError` naming it."""
    return error if isinstance(error, InferenceError) else InferenceError(type(error).__name__, str(error))


class EngineThreads:
    """The per-thread engines: each worker thread lazily builds one engine per model."""

    def __init__(self, models: dict[str, nn.Module], backend: str, factory: EngineFactory) -> None:
        self.models = models
        self.backend = backend
        self.factory = factory
        self.local = threading.local()

    def engine(self, model: str) -> Any:
        """This thread's engine for ``model``."""
        engines = self.local.__dict__.setdefault("engines", {})
        if model not in engines:
            engines[model] = self.factory(self.models[model], self.backend)
        return engines[model]

    def warm(self) -> None:
        """Build this thread's engines and run each once (a short stroke), before any visitor's call:
        the first call of a reference engine took seconds (hooks, CRP set-up), a fast one ~0.2 s."""
        stroke = (((0.3, 0.3), (0.7, 0.7)),)
        jobs = [Job(model, stroke, (Spec(None, None, DEFAULT_METHOD, family_of(self.models[model]).default_rule),))
                for model in self.models]
        self.run(jobs)

    def run(self, jobs: Sequence[Job]) -> list[JobResult | Exception]:
        """Compute ``jobs`` (one engine call per model); a failing call is retried job by job.

        Retrying alone finds the job that failed, so only its visitor hears of it.
        """
        results: dict[int, JobResult | Exception] = {}
        for model in dict.fromkeys(job.model for job in jobs):
            indices = [index for index, job in enumerate(jobs) if job.model == model]
            try:
                for index, result in zip(indices, self._compute([jobs[i] for i in indices])):
                    results[index] = result
            except Exception:  # noqa: BLE001 — isolated below, job by job
                for index in indices:
                    results[index] = self._compute_alone(jobs[index])
        return [results[index] for index in range(len(jobs))]

    def _compute_alone(self, job: Job) -> JobResult | Exception:
        try:
            return self._compute([job])[0]
        except Exception as error:  # noqa: BLE001 — handed to the visitor's session, which closes 1011
            return error

    def _compute(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Sanity jobs one by one, the others in one engine call."""
        checks = {index: self._check(job) for index, job in enumerate(jobs) if job.sanity}
        plain = [job for job in jobs if not job.sanity]
        explained = iter(self._explain(plain) if plain else [])
        return [checks[index] if index in checks else next(explained) for index in range(len(jobs))]

    def _explain(self, jobs: Sequence[Job]) -> list[JobResult]:
        started = time.perf_counter()
        # Costs in this thread's CPU time: on a busy machine wall time would charge a visitor for the
        # time the thread waited for a core (or the GIL).
        images, raster_s = [], []
        for job in jobs:
            raster_started = time.thread_time()
            images.append(model_input(job.strokes, job.photo, job.raster))
            raster_s.append(time.thread_time() - raster_started)
        requests = [spec.request(image) for job, image in zip(jobs, images) for spec in job.specs]
        engine = self.engine(jobs[0].model)  # built on a thread's first job: not these visitors' cost
        engine_started = time.thread_time()
        frames = iter(engine.explain(requests))
        share_s = (time.thread_time() - engine_started) / len(jobs)
        compute_ms = (time.perf_counter() - started) * 1000.0
        return [self._finish(job, JobResult(image, [next(frames) for _ in job.specs], compute_ms,
                                            cost_s=raster + share_s,
                                            raster_work_px=job.raster.work_px if job.raster else 0.0))
                for job, image, raster in zip(jobs, images, raster_s)]

    @staticmethod
    def _finish(job: Job, result: JobResult) -> JobResult:
        """``result`` with the job's message rendered (its time added to the job's cost)."""
        if job.render is None:
            return result
        started = time.thread_time()
        text = job.render(result)
        return dataclasses.replace(result, text=text, cost_s=result.cost_s + time.thread_time() - started)

    def _check(self, job: Job) -> JobResult:
        """A sanity job: each spec's frame data and sanity report, one spec at a time."""
        started = time.perf_counter()
        image = model_input(job.strokes, job.photo)
        checked = [self.engine(job.model).sanity(spec.request(image)) for spec in job.specs]
        result = JobResult(image, [frame for frame, _ in checked], (time.perf_counter() - started) * 1000.0,
                           sanity=[report for _, report in checked])
        return result if job.render is None else dataclasses.replace(result, text=job.render(result))


# Per model object (weakly: an app's models die with it), per backend: the engine no thread calls.
_prototypes: "weakref.WeakKeyDictionary[nn.Module, dict[str, Engine]]" = weakref.WeakKeyDictionary()
_prototypes_lock = threading.Lock()


def default_engine_factory(model: nn.Module, backend: str) -> Engine:
    """A new engine of ``model`` for one thread, sharing its read-only tensors with the other threads'
    (:meth:`Engine.for_thread`): each of the five engine threads of a server process held its own ~30 MB."""
    with _prototypes_lock:
        prototypes = _prototypes.setdefault(model, {})
        if backend not in prototypes:
            prototypes[backend] = Engine(model, backend=backend)
        prototype = prototypes[backend]
    return prototype.for_thread()


def one_torch_thread() -> None:
    """Run torch with one intra-op thread on this thread: with two, batched calls stalled by ~50 ms here."""
    torch.set_num_threads(1)
