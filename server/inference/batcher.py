"""Dispatch: micro-batching of frames across visitors onto the engine threads, fairly and within a deadline.

Each visitor has at most one frame job and one comparison job in flight
(``server.session``), so the lanes hold at most two jobs per connection.  A
dispatcher task takes the oldest job, waits for a free worker thread, adds
the jobs that piled up meanwhile and those arriving within
``batch_wait_ms``, and hands up to ``batch_max`` jobs to that thread as one
engine call per model.  While every worker is busy, jobs pile up and the
next batch is larger: batching grows with load instead of adding latency
when the server is idle.

Slow jobs (on-pause methods, comparisons, sanity checks, counterfactual
searches, neuron scans) take a lane of their own, one job per call, on
threads of their own of lower priority (``SLOW_NICE``), so that they never
hold up a live frame, within a CPU budget per visitor and per process
(:mod:`server.inference.budget`): a job over either waits.  So do the
frames of a visitor whose last frame was costly or whose recent engine
time exceeds its fair share (:class:`server.inference.usage.Usage`): they
are never batched with other visitors' frames, and a visitor over its share
first waits until its usage has decayed to it.  Its engine time stays
within the share, and its own frame rate drops first.

Every call has the workers' deadline (:mod:`server.inference.workers`).  A
batch that overruns it fails only if it held one job; otherwise each of its
jobs is tried again alone, so that only the job that hangs again fails.
"""

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from server.metrics import Metrics

from .budget import SlowBudget
from .jobs import DEADLINE_EXCEEDED, EngineThreads, InferenceError, Job, JobResult, as_inference_error
from .lanes import Item, Lane
from .usage import Usage
from .workers import Worker, Workers

T = TypeVar("T")


# Niceness of the slow lane's threads (setpriority(2)): on a busy machine the kernel gives live
# frames the cores first, and an abuser's costly frames wait.
SLOW_NICE = 10


class Batcher:
    """Runs jobs of many visitors: live frames in batches of at most ``batch_max`` on ``workers`` threads,
    slow jobs one at a time on ``workers - 1`` (at least one) threads of lower priority.

    ``deadline_s``: an engine call not returned within it fails (see the module's docstring).
    ``fair_share``: engine time per second a visitor's frames may use (:mod:`server.inference.usage`).
    ``slow_share``, ``slow_budget``: the slow lane's CPU budget per visitor (seconds per second) and per
    process (fraction of one core) (:mod:`server.inference.budget`).
    """

    def __init__(self, threads: EngineThreads, metrics: Metrics, workers: int, batch_max: int,
                 batch_wait_ms: float, max_jobs: int, deadline_s: float, fair_share: float,
                 slow_share: float = 0.1, slow_budget: float = 0.25) -> None:
        self.threads = threads
        self.metrics = metrics
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_ms / 1000.0
        # Every thread may hang once and be replaced: a server survives as many hangs as it has threads, and
        # at least two, since an input that hangs in a batch hangs again when retried alone.
        self.frame_workers = Workers(workers, deadline_s, max_abandoned=max(2, workers), warm=threads.warm)
        slow = max(1, workers - 1)
        self.slow_workers = Workers(slow, deadline_s, max_abandoned=slow, nice=SLOW_NICE, warm=threads.warm)
        self.max_jobs = max_jobs
        self.usage = Usage(fair_share)
        self.budget = SlowBudget(slow_share, slow_budget)
        self.fast, self.slow = Lane(), Lane()
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def serving(self) -> bool:
        """Whether frames can still be computed (some frame thread is left)."""
        return self.frame_workers.serving

    def start(self) -> None:
        self._spawn(self._dispatch_fast())
        self._spawn(self._dispatch_slow())

    async def stop(self) -> None:
        """Stop dispatching, fail queued jobs, end the threads without waiting for them."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for lane in (self.fast, self.slow):
            lane.fail(InferenceError("Shutdown", "the server is shutting down"))
        self.frame_workers.stop()
        self.slow_workers.stop()

    async def compute(self, job: Job, slow: bool = False) -> JobResult:
        """Queue ``job`` (``slow``: on the slow lane) and wait for its result; raises :class:`InferenceError`."""
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        # Each open connection has at most two jobs queued (a frame, a comparison), so this bound is
        # never reached unless that invariant breaks; jobs of visitors who left are purged first.
        # Purging walks both queues: only when the cheap count says the bound is reached.
        if len(self.fast.items) + len(self.slow.items) >= self.max_jobs \
                and self.fast.purge() + self.slow.purge() >= self.max_jobs:
            raise InferenceError("Overloaded", f"{self.max_jobs} jobs already queued")
        # Fair share: a visitor over budget waits until its usage has decayed to the share; a costly
        # frame is computed alone, so that it holds up no other visitor's batch.
        now = time.monotonic()
        if slow:  # held until the visitor's slow-lane usage has decayed to its share
            await asyncio.sleep(self.budget.visitor_wait_s(job.owner, now))
        over = not slow and self.usage.over_share(job.owner, now)
        if over:
            await asyncio.sleep(self.usage.wait_s(job.owner, now))
        alone = slow or over or self.usage.heavy(job.owner, now)
        (self.slow if alone else self.fast).put((job, future))
        result = await future
        if not slow:  # a live frame: what the fair share is about (slow jobs have their own lane anyway)
            self.usage.charge(job.owner, result.cost_s, result.raster_work_px, time.monotonic())
        return result

    async def call(self, function: Callable[..., T], *args: Any, owner: int = 0) -> T:
        """Run ``function(*args)`` on a worker thread, as a slow job of visitor ``owner``, within the deadline
        and the slow lane's budgets."""
        await asyncio.sleep(self.budget.visitor_wait_s(owner, time.monotonic()))
        worker = await self.slow_workers.acquire()
        await self._within_lane_budget(worker)
        started = time.monotonic()
        try:
            timed: tuple[T, float] = await self.slow_workers.run(worker, _thread_timed, function, args)
        except InferenceError:
            self.budget.charge(owner, time.monotonic() - started, time.monotonic())  # its CPU time is unknown
            raise
        result, cost_s = timed
        self.budget.charge(owner, cost_s, time.monotonic())
        return result

    async def _within_lane_budget(self, worker: Worker) -> None:
        """Wait, holding slow-lane thread ``worker``, until the process's slow-lane budget lets a job start
        (idle in proportion to the last jobs' cost); ``worker`` is released if the wait is cancelled."""
        try:
            await asyncio.sleep(self.budget.lane_wait_s(time.monotonic()))
        except BaseException:
            self.slow_workers.release(worker)
            raise

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _dispatch_fast(self) -> None:
        """Wait for a job, then a worker; batch what piled up meanwhile, plus ``batch_wait_s`` more."""
        while True:
            item = await self.fast.take()
            worker = await self._acquire(self.frame_workers, self.fast, [item])
            if worker is None:
                continue
            batch = [item]
            self.fast.drain(batch, self.batch_max)
            if len(batch) < self.batch_max and self.batch_wait_s > 0:
                await asyncio.sleep(self.batch_wait_s)
                self.fast.drain(batch, self.batch_max)
            self._spawn(self._run(batch, self.frame_workers, worker))

    async def _dispatch_slow(self) -> None:
        while True:
            item = await self.slow.take()
            worker = await self._acquire(self.slow_workers, self.slow, [item])
            if worker is None:
                continue
            await self._within_lane_budget(worker)
            self._spawn(self._run([item], self.slow_workers, worker))

    @staticmethod
    async def _acquire(workers: Workers, lane: Lane, waiting: list[Item]) -> Worker | None:
        """A free thread of ``workers``; ``None`` if none is left, after failing ``waiting`` and ``lane``."""
        try:
            return await workers.acquire()
        except InferenceError as error:
            for _, future in waiting:
                if not future.done():
                    future.set_exception(error)
            lane.fail(error)
            return None

    async def _run(self, batch: list[Item], workers: Workers, worker: Worker) -> None:
        """Compute ``batch`` on ``worker`` (of ``workers``), then settle each job's future."""
        live = [(job, future) for job, future in batch if not future.done()]
        if not live:  # every visitor of the batch left while it waited for a worker
            workers.release(worker)
            return
        started = time.perf_counter()
        results: Sequence[JobResult | Exception]
        try:
            results = await workers.run(worker, self.threads.run, [job for job, _ in live])
        except Exception as error:  # noqa: BLE001 — each visitor must hear of it (1011), never wait for ever
            if isinstance(error, InferenceError) and error.error_type == DEADLINE_EXCEEDED and len(live) > 1:
                self._retry_alone(live, workers)  # which job hung is unknown: the one that hangs again
                return
            results = [error] * len(live)
        elapsed_s = time.perf_counter() - started
        if workers is self.slow_workers:
            for (job, _), result in zip(live, results):  # a failed job's CPU time is unknown: its wall time
                cost_s = result.cost_s if isinstance(result, JobResult) else elapsed_s
                self.budget.charge(job.owner, cost_s, time.monotonic())
        self._settle(live, results, elapsed_s)

    def _retry_alone(self, items: list[Item], workers: Workers) -> None:
        """Run each job of a batch that overran the deadline again on its own, side by side on any free
        threads: the job that hangs again holds up no other."""
        for item in items:
            self._spawn(self._run_alone(item, workers))

    async def _run_alone(self, item: Item, workers: Workers) -> None:
        worker = await self._acquire(workers, self.fast, [item])
        if worker is not None:
            await self._run([item], workers, worker)

    def _settle(self, live: list[Item], results: Sequence[JobResult | Exception], elapsed_s: float) -> None:
        self.metrics.batch_size.observe(len(live))
        self.metrics.inference_seconds.observe(elapsed_s)
        for (_, future), result in zip(live, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(as_inference_error(result))
            else:
                future.set_result(result)


def _thread_timed(function: Callable[..., T], args: tuple[Any, ...]) -> tuple[T, float]:
    """``function(*args)`` and the CPU seconds this thread spent on it."""
    started = time.thread_time()
    result = function(*args)
    return result, time.thread_time() - started
