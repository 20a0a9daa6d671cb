"""Micro-batching of frames across visitors onto a bounded pool of engine threads.

Each visitor has at most one frame :class:`Job` and one comparison job in
flight (``server.session``), so the queues hold at most two jobs per
connection.  A dispatcher task takes the
oldest job, waits for a free worker thread, adds the jobs that piled up
meanwhile and those arriving within ``batch_wait_ms``, and hands up to
``batch_max`` jobs to that thread as one engine call per model.  While every
worker is busy, jobs pile up and the next batch is larger: batching grows
with load instead of adding latency when the server is idle.  Slow jobs
(on-pause methods) take a lane of their own that never holds every thread.

Workers run ``torch`` with one thread each (``torch.set_num_threads(1)``: two
intra-op threads per call stalled batched calls by 50 ms here) and each owns
one engine per model, built on first use: the reference backend attaches
hooks to its model, which must never be shared between threads.

With :class:`EngineProcesses` the per-frame batches leave the server process:
the event loop writes each batch to an idle child process and reads its
reply, while the GIL stays with the loop.  In one process the event loop and the
engine threads take turns on one GIL; measured here that capped a server at
~1,500 frames/s on less than one core.
"""

import asyncio
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from server.explain.engine import Engine, FrameData, Request, Selection
from server.raster import rasterize

from .metrics import Metrics

T = TypeVar("T")
EngineFactory = Callable[[nn.Module, str], Any]


@dataclass(frozen=True)
class Spec:
    """One map to compute for a job's drawing: the selection, method and rule.

    ``heatmap=False`` skips the method's heatmap (an on-pause method while the
    visitor draws): the frame data is what the engine returns in mode
    ``attribution`` minus the heatmap, which is all zeros and ``pending``.
    """

    output: int | None
    hidden: int | None
    method: str
    rule: str
    heatmap: bool = True

    def request(self, image: np.ndarray) -> Request:
        """The engine request; without a heatmap, the cheap LRP request that shares every other number."""
        if self.heatmap:
            return Request(image, Selection(self.output, self.hidden), method=self.method, rule=self.rule)
        return Request(image, Selection(self.output, None), method="lrp", rule=self.rule)

    def finish(self, frame: FrameData) -> FrameData:
        """The engine's frame data, as an attribution method without its heatmap would have it."""
        if self.heatmap:
            return frame
        # engine.Engine._frame in mode "attribution": no relevance reaches the hidden layer.
        return dataclasses.replace(
            frame, mode="attribution", hidden_relevance=np.zeros_like(frame.hidden_relevance),
            heatmap=np.zeros_like(frame.heatmap),
            conservation={**frame.conservation, "input_sum": 0.0, "hidden_sum": 0.0})


@dataclass(frozen=True)
class JobResult:
    """``image``: the ``(28, 28)`` float32 model input; ``frames``: one per spec; ``compute_ms``: the batch's time.

    ``text``: what the job's ``render`` made of this result, if it has one.  Such
    a result computed in an engine process carries the text alone: ``image``
    is empty and ``frames`` too.
    """

    image: np.ndarray
    frames: list[FrameData]
    compute_ms: float
    text: str | None = None


@dataclass(frozen=True)
class Job:
    """A drawing of one visitor and the maps wanted for it, on model ``model``.

    ``strokes``: tuples of ``(x, y)`` canvas fractions, already validated.
    ``render``: called with the result on the engine thread, its return value
    becomes ``JobResult.text``: the message is encoded there, so that the event
    loop never runs numpy (each numpy call may hand the GIL to an engine
    thread, and taking it back can wait for that thread's switch interval).
    """

    model: str
    strokes: tuple[tuple[tuple[float, float], ...], ...]
    specs: tuple[Spec, ...]
    render: Callable[[JobResult], str] | None = None


class InferenceError(RuntimeError):
    """Computing a job failed; ``error_type`` names the exception raised in the engine thread."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return InferenceError, (self.error_type, self.message)  # it crosses from engine processes


def as_inference_error(result: "JobResult | Exception") -> "JobResult | InferenceError":
    """``result``, with an exception replaced by the :class:`InferenceError` naming it."""
    if isinstance(result, Exception) and not isinstance(result, InferenceError):
        return InferenceError(type(result).__name__, str(result))
    return result


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
        started = time.perf_counter()
        images = [rasterize(job.strokes) for job in jobs]
        requests = [spec.request(image) for job, image in zip(jobs, images) for spec in job.specs]
        frames = iter(self.engine(jobs[0].model).explain(requests))
        compute_ms = (time.perf_counter() - started) * 1000.0
        results = [JobResult(image, [spec.finish(next(frames)) for spec in job.specs], compute_ms)
                   for job, image in zip(jobs, images)]
        return [result if job.render is None else dataclasses.replace(result, text=job.render(result))
                for job, result in zip(jobs, results)]


def default_engine_factory(model: nn.Module, backend: str) -> Engine:
    return Engine(model, backend=backend)


def _one_torch_thread() -> None:
    torch.set_num_threads(1)


def _engine_process_main(connection: multiprocessing.connection.Connection, models: bytes, backend: str,
                         factory: EngineFactory) -> None:
    """A child of :class:`EngineProcesses`: compute each list of jobs received, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the server ends us
    torch.set_num_threads(1)
    threads = EngineThreads(pickle.loads(models), backend, factory)
    # Build every engine and run torch once before the first visitor's frame does (~0.2 s here).  A child
    # that cannot compute must not join the pool: it exits, and the server sees a failed start.
    for result in threads.run([Job(model, (((0.3, 0.3), (0.7, 0.7)),), (Spec(None, None, "lrp", "epsilon"),))
                               for model in threads.models]):
        if isinstance(result, Exception):
            raise result
    while True:
        try:
            jobs = connection.recv()
        except (EOFError, OSError):
            return  # the server closed the pipe or exited
        connection.send([_portable(job, result) for job, result in zip(jobs, threads.run(jobs))])


def _portable(job: Job, result: JobResult | Exception) -> JobResult | InferenceError:
    """What crosses back to the server: a rendered job's text and time only (the frame data, ~3× the
    text's size, would cost the event loop its unpickling); an exception as :class:`InferenceError`."""
    if isinstance(result, Exception):
        return as_inference_error(result)
    return JobResult(_NO_IMAGE, [], result.compute_ms, result.text) if job.render is not None else result


_NO_IMAGE = np.zeros((0, 0), dtype=np.float32)


class _Replies(asyncio.Protocol):
    """The parent's end of one child's socket: writes jobs, reassembles the child's replies.

    Messages are framed as :class:`multiprocessing.connection.Connection`
    frames them (a 4-byte big-endian signed length, or -1 and an 8-byte
    length, then the pickle), so the child simply uses ``recv`` and ``send``.
    At most one reply is awaited at a time.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[list[JobResult | Exception]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (reply := self._take()) is not None:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(pickle.loads(reply))

    def _take(self) -> bytes | None:
        if len(self.buffer) < 4:
            return None
        size, header = int.from_bytes(self.buffer[:4], "big", signed=True), 4
        if size == -1:
            if len(self.buffer) < 12:
                return None
            size, header = int.from_bytes(self.buffer[4:12], "big"), 12
        if len(self.buffer) < header + size:
            return None
        reply = bytes(self.buffer[header:header + size])
        del self.buffer[:header + size]
        return reply

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(EOFError("the engine process ended"))

    async def ask(self, jobs: list[Job]) -> list[JobResult | Exception]:
        if self.lost or self.transport is None:
            raise EOFError("the engine process ended")
        payload = pickle.dumps(jobs, protocol=pickle.HIGHEST_PROTOCOL)
        header = len(payload).to_bytes(4, "big", signed=True) if len(payload) < 2**31 - 1 \
            else (-1).to_bytes(4, "big", signed=True) + len(payload).to_bytes(8, "big")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(header + payload)
        try:
            return await self.waiter
        except asyncio.CancelledError:
            self.lost = True  # its reply would be taken for the next batch's: never ask this child again
            raise


class EngineProcess:
    """One child process with its own engines, and the socket to it."""

    def __init__(self, context: multiprocessing.context.BaseContext, models: bytes, backend: str,
                 factory: EngineFactory) -> None:
        """Start the child and wait until it has loaded its models (blocking: call from a thread)."""
        self.connection, child_end = context.Pipe()  # a socketpair on POSIX
        self.process = context.Process(target=_engine_process_main, args=(child_end, models, backend, factory),
                                       name="xai-engine", daemon=True)
        self.process.start()
        child_end.close()
        self.connection.send([])
        self.connection.recv()
        self.replies = _Replies()

    async def attach(self) -> None:
        """Hand the socket to the running event loop."""
        sock = socket.socket(fileno=os.dup(self.connection.fileno()))
        self.connection.close()
        await asyncio.get_running_loop().create_unix_connection(lambda: self.replies, sock=sock)

    async def run(self, jobs: Sequence[Job]) -> list[JobResult | Exception]:
        """:meth:`EngineThreads.run` in the child; raises ``EOFError`` if the child died."""
        return await self.replies.ask(list(jobs))

    def close(self) -> None:
        """Close the socket: the child's ``recv`` ends and it exits (the transport closes on the next loop turn)."""
        if self.replies.transport is not None:
            self.replies.transport.abort()
        else:
            self.connection.close()

    def join(self) -> None:
        """Wait for the child to exit after :meth:`close` (blocking: call from a thread); kill it after 1 s."""
        self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=1.0)


class EngineProcesses:
    """``count`` engine processes; :meth:`run` computes jobs in an idle one (``count`` callers at most).

    The event loop talks to the children itself (one socket each), so a
    frame costs the same two wake-ups as on a worker thread: the child's and
    the loop's.  Children are forked from a forkserver that has imported this
    module (torch, the engine) once, so that starting one costs model loading
    only.  A child that dies fails its batch and is replaced.
    """

    def __init__(self, threads: EngineThreads, count: int, preload: Sequence[str] = ()) -> None:
        """``preload``: modules the jobs refer to (e.g. their ``render``), imported before the first
        job rather than while unpickling it (importing the session layer took ~0.2 s)."""
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload([__name__, *preload])
        self.models = pickle.dumps(threads.models)
        self.backend, self.factory = threads.backend, threads.factory
        self.count = count
        self.children: list[EngineProcess] = []
        self.idle: asyncio.Queue[EngineProcess | None] = asyncio.Queue()  # None: the pool is empty

    def _start(self) -> EngineProcess:
        return EngineProcess(self.context, self.models, self.backend, self.factory)

    async def start(self) -> None:
        """Start every child (in threads: each blocks until its models are loaded)."""
        for child in await asyncio.gather(*(asyncio.to_thread(self._start) for _ in range(self.count))):
            await child.attach()
            self.children.append(child)
            self.idle.put_nowait(child)

    @property
    def lost(self) -> bool:
        """Whether every child died and none could be restarted: no batch can run any more."""
        return not self.children

    async def run(self, jobs: Sequence[Job]) -> list[JobResult | Exception]:
        child = await self.idle.get()
        while child is None:  # put there when the pool became empty
            if self.lost:  # still empty: pass the news on to the next caller, who waits as we did
                self.idle.put_nowait(None)
                raise InferenceError("NoEngineProcess", "every engine process died and none could be restarted")
            child = await self.idle.get()  # a restart that was under way succeeded since: drop the news
        try:
            results = await child.run(jobs)
        except EOFError as error:
            await self._replace(child)
            return [InferenceError("EngineProcessDied", str(error))] * len(jobs)
        except BaseException:
            self.idle.put_nowait(child)  # the child itself is alive: only this batch failed
            raise
        self.idle.put_nowait(child)
        return results

    async def _replace(self, dead: EngineProcess) -> None:
        """Drop a dead child and start another in its place.

        If the new child fails to start, the error propagates (its batch's
        visitors get 1011) and the pool is one child smaller: a dead child is
        never handed out again.  Once the pool is empty, every later batch
        fails at once with ``NoEngineProcess`` rather than wait for a child.
        """
        self.children.remove(dead)
        dead.close()
        await asyncio.to_thread(dead.join)
        try:
            child = await asyncio.to_thread(self._start)
            await child.attach()
        except BaseException:
            if self.lost:
                self.idle.put_nowait(None)  # wakes the callers waiting in run
            raise
        self.children.append(child)
        self.idle.put_nowait(child)

    async def stop(self) -> None:
        for child in self.children:
            child.close()
        await asyncio.gather(*(asyncio.to_thread(child.join) for child in self.children))


Item = tuple[Job, asyncio.Future[JobResult]]


class Lane:
    """The jobs waiting for a worker, oldest first; jobs of visitors who left are skipped."""

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        self.available = asyncio.Event()

    def purge(self) -> int:
        """Drop the jobs whose visitor left (their future is cancelled); return how many remain."""
        self.items = deque(item for item in self.items if not item[1].done())
        return len(self.items)

    def put(self, item: Item) -> None:
        self.items.append(item)
        self.available.set()

    async def take(self) -> Item:
        """The oldest live job, waiting for one if there is none."""
        while True:
            while self.items:
                item = self.items.popleft()
                if not item[1].done():
                    return item
            self.available.clear()
            await self.available.wait()

    def drain(self, batch: list[Item], limit: int) -> None:
        """Move live jobs into ``batch`` until it holds ``limit``."""
        while len(batch) < limit and self.items:
            item = self.items.popleft()
            if not item[1].done():
                batch.append(item)

    def fail(self, error: Exception) -> None:
        for _, future in self.items:
            if not future.done():
                future.set_exception(error)
        self.items.clear()


class Batcher:
    """Runs jobs of many visitors on ``workers`` threads, per-frame jobs in batches of at most ``batch_max``.

    Two lanes share the threads.  Per-frame jobs are batched.  Slow jobs
    (on-pause methods such as LIME, comparisons) run one per call and hold
    at most ``workers - 1`` threads, so that with two or more workers a
    visitor waiting for LIME never holds up another visitor's frames.
    """

    def __init__(self, threads: EngineThreads, metrics: Metrics, workers: int, batch_max: int,
                 batch_wait_ms: float, max_jobs: int, processes: EngineProcesses | None = None) -> None:
        self.threads = threads
        self.processes = processes
        # Per-frame batches run in the engine processes if there are any; slow jobs always on the threads.
        self.run_fast = processes.run if processes is not None else self._on_thread
        self.metrics = metrics
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_ms / 1000.0
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="engine",
                                           initializer=_one_torch_thread)
        self.free_workers = asyncio.Semaphore(workers)
        self.slow_slots = asyncio.Semaphore(max(1, workers - 1))
        self.max_jobs = max_jobs
        self.fast, self.slow = Lane(), Lane()
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._spawn(self._dispatch_fast())
        self._spawn(self._dispatch_slow())

    async def stop(self) -> None:
        """Stop dispatching, fail queued jobs, drop the threads without waiting for them."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for lane in (self.fast, self.slow):
            lane.fail(InferenceError("Shutdown", "the server is shutting down"))
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.processes is not None:
            await self.processes.stop()

    async def compute(self, job: Job, slow: bool = False) -> JobResult:
        """Queue ``job`` (``slow``: on the slow lane) and wait for its result; raises :class:`InferenceError`."""
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        # Each open connection has at most two jobs queued (a frame, a comparison), so this bound is
        # never reached unless that invariant breaks; jobs of visitors who left are purged first.
        # Purging walks both queues: only when the cheap count says the bound is reached.
        if len(self.fast.items) + len(self.slow.items) >= self.max_jobs \
                and self.fast.purge() + self.slow.purge() >= self.max_jobs:
            raise InferenceError("Overloaded", f"{self.max_jobs} jobs already queued")
        (self.slow if slow else self.fast).put((job, future))
        return await future

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(*args)`` on a worker thread, as a slow job (it holds a thread for long)."""
        async with self.slow_slots, self.free_workers:
            return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _dispatch_fast(self) -> None:
        """Wait for a job, then a worker; batch what piled up meanwhile, plus ``batch_wait_s`` more."""
        while True:
            batch = [await self.fast.take()]
            await self.free_workers.acquire()
            self.fast.drain(batch, self.batch_max)
            if len(batch) < self.batch_max and self.batch_wait_s > 0:
                await asyncio.sleep(self.batch_wait_s)
                self.fast.drain(batch, self.batch_max)
            self._spawn(self._run(batch, self.run_fast, self.free_workers))

    async def _dispatch_slow(self) -> None:
        while True:
            item = await self.slow.take()
            await self.slow_slots.acquire()
            await self.free_workers.acquire()
            self._spawn(self._run([item], self._on_thread, self.free_workers, self.slow_slots))

    def _on_thread(self, jobs: list[Job]) -> Awaitable[list[JobResult | Exception]]:
        return asyncio.get_running_loop().run_in_executor(self.executor, self.threads.run, jobs)

    async def _run(self, batch: list[Item], run: Callable[[list[Job]], Awaitable[list[JobResult | Exception]]],
                   *held: asyncio.Semaphore) -> None:
        """Compute ``batch`` with ``run``, then release ``held`` and settle each job's future."""
        live = [(job, future) for job, future in batch if not future.done()]
        if not live:  # every visitor of the batch left while it waited for a worker
            for semaphore in held:
                semaphore.release()
            return
        started = time.perf_counter()
        try:
            results = await run([job for job, _ in live])
        except Exception as error:  # noqa: BLE001 — executor shut down, a job that would not pickle, a child
            # that could not be restarted: each visitor must hear of it (1011), never wait on its future forever.
            results = [error] * len(live)
        finally:
            for semaphore in held:
                semaphore.release()
        self.metrics.batch_size.observe(len(live))
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        for (_, future), result in zip(live, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(as_inference_error(result))
            else:
                future.set_result(result)
