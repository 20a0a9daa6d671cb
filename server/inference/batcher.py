"""Dispatch: micro-batching of frames across visitors onto a bounded pool of engine threads.

Each visitor has at most one frame job and one comparison job in flight
(``server.session``), so the lanes hold at most two jobs per connection.  A
dispatcher task takes the oldest job, waits for a free worker thread, adds
the jobs that piled up meanwhile and those arriving within
``batch_wait_ms``, and hands up to ``batch_max`` jobs to that thread as one
engine call per model.  While every worker is busy, jobs pile up and the
next batch is larger: batching grows with load instead of adding latency
when the server is idle.  Slow jobs (on-pause methods) take a lane of their
own that never holds every thread.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from server.metrics import Metrics

from .jobs import EngineThreads, InferenceError, Job, JobResult, as_inference_error, one_torch_thread
from .lanes import Item, Lane
from .processes import EngineProcesses

T = TypeVar("T")


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
                                           initializer=one_torch_thread)
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
