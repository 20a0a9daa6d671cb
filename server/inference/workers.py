"""Engine worker threads, each call bounded by a deadline; a thread that overruns it is replaced.

A Python thread cannot be stopped from outside.  So a call that has not
returned within ``deadline_s`` is failed for its callers
(:class:`InferenceError` ``DeadlineExceeded``), its thread is abandoned (it
ends by itself if the call ever returns; its late result is dropped) and a
warm spare thread, its engines built, takes its place in the pool at once
(another spare starts warming).  At most ``max_abandoned``
abandoned threads may be alive at once: each may hold a core or memory for
ever, so beyond that the pool shrinks instead, and once it is empty every
call fails at once and :attr:`Workers.serving` is false, which turns
``/healthz`` red so that the orchestrator restarts the replica.

The event loop never waits for a thread: results come back through
``loop.call_soon_threadsafe``.
"""

import asyncio
import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .jobs import DEADLINE_EXCEEDED, InferenceError, one_torch_thread

T = TypeVar("T")
Call = tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]

_names = itertools.count()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return  # failed by the deadline, or its caller left
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Worker:
    """One engine thread running the calls put to it, one at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, nice: int, warm: Callable[[], object],
                 ready: Callable[["Worker"], None]) -> None:
        """``warm`` runs first on the new thread (its engines built, torch run once); then ``ready(self)``
        is called on the event loop: only then does the worker take calls, so that the deadline never
        counts a thread's start-up (the reference backend's took over 3 s on this loaded machine)."""
        self.loop = loop
        self.nice = nice
        self.warm, self.ready = warm, ready
        self.calls: queue.SimpleQueue[Call | None] = queue.SimpleQueue()
        self.abandoned = False
        self.thread = threading.Thread(target=self._serve, name=f"engine-{next(_names)}", daemon=True)
        self.thread.start()

    def submit(self, function: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.loop.create_future()
        self.calls.put((function, args, future))
        return future

    def stop(self) -> None:
        """End the thread after its current call (it is a daemon: a hung one does not hold up exit)."""
        self.calls.put(None)

    def _serve(self) -> None:
        one_torch_thread()
        if self.nice:  # Linux: a thread is a task of its own, with its own niceness
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        try:
            self.warm()
        finally:  # a warm-up that failed fails again in the first call: its visitors hear of it (1011)
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self.ready, self)
        while not self.abandoned and (call := self.calls.get()) is not None:
            function, args, future = call
            try:
                result, error = function(*args), None
            except BaseException as raised:  # noqa: BLE001 — handed to the awaiting coroutine
                result, error = None, raised
            if self.loop.is_closed():
                return
            self.loop.call_soon_threadsafe(_settle, future, result, error)


class Workers:
    """``count`` engine threads; :meth:`acquire` one, :meth:`run` a call on it, which releases it."""

    def __init__(self, count: int, deadline_s: float, max_abandoned: int, nice: int = 0,
                 warm: Callable[[], object] = lambda: None) -> None:
        """``nice``: the threads' niceness (setpriority(2)); higher runs later on a busy machine.
        ``warm``: run on each first thread before it takes calls (see :class:`Worker`)."""
        self.deadline_s = deadline_s
        self.max_abandoned = max_abandoned
        self.nice = nice
        self.warm = warm
        self.idle: list[Worker] = []  # each joins once warm
        self.stopped = False
        for _ in range(count):
            self._start(self.release)
        # A warm spare takes a hung thread's place at once: a cold one's first call builds its engines,
        # which took over a second on this loaded machine, on top of the deadline its visitors waited.
        self.spares: list[Worker] = []
        self.owed = 0  # replacements due to the pool, waiting for a spare to be warm
        self._start(self._spare_ready)
        self.size = count
        self.abandoned: list[Worker] = []
        self.changed = asyncio.Event()

    @property
    def serving(self) -> bool:
        """Whether any thread is left to compute with."""
        return self.size > 0

    @property
    def hung(self) -> int:
        """Abandoned threads still alive (still inside the call that overran)."""
        self.abandoned = [worker for worker in self.abandoned if worker.thread.is_alive()]
        return len(self.abandoned)

    async def acquire(self) -> Worker:
        """An idle thread, waiting for one; raises ``InferenceError`` if the pool is empty."""
        while not self.idle:
            if not self.serving:
                raise InferenceError("NoEngineThread", f"every engine thread overran the "
                                     f"{self.deadline_s:g} s deadline and no more could be replaced")
            self.changed.clear()
            await self.changed.wait()
        return self.idle.pop()

    def release(self, worker: Worker) -> None:
        if self.stopped:
            worker.stop()
            return
        self.idle.append(worker)
        self.changed.set()

    def _start(self, ready: Callable[[Worker], None]) -> None:
        Worker(asyncio.get_running_loop(), self.nice, self.warm, ready)

    def _spare_ready(self, worker: Worker) -> None:
        if self.stopped:
            worker.stop()
            return
        self.spares.append(worker)
        self._pay()

    def _pay(self) -> None:
        """Hand warm spares to the pool for the replacements it is owed."""
        while self.owed and self.spares:
            self.owed -= 1
            self.release(self.spares.pop())

    async def run(self, worker: Worker, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on ``worker`` (from :meth:`acquire`), within the deadline; releases ``worker``.

        Raises ``InferenceError(DEADLINE_EXCEEDED)`` when the deadline passes first;
        ``worker`` is then abandoned and replaced (see the module's docstring).
        """
        future = worker.submit(function, *args)
        try:
            done, _ = await asyncio.wait({future}, timeout=self.deadline_s)
        except BaseException:
            future.cancel()  # our caller was cancelled (shutdown): the thread finishes the call, unobserved
            self.release(worker)
            raise
        if not done:
            future.cancel()
            self._replace(worker)
            raise InferenceError(DEADLINE_EXCEEDED, f"not computed within {self.deadline_s:g} s")
        self.release(worker)
        return future.result()

    def _replace(self, worker: Worker) -> None:
        worker.abandoned = True
        worker.stop()
        self.abandoned.append(worker)
        if self.hung <= self.max_abandoned:
            self.owed += 1
            self._start(self._spare_ready)  # the next spare
            self._pay()
        else:
            self.size -= 1
        self.changed.set()

    def stop(self) -> None:
        """End every thread once its call returns; hung ones are daemons and do not delay exit."""
        self.stopped = True
        for worker in self.idle + self.spares:
            worker.stop()
        self.idle.clear()
        self.spares.clear()
        self.size = 0
        self.changed.set()
