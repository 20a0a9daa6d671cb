"""Engine child processes: per-frame batches computed out of the server process's GIL (``ENGINE_PROCESSES``).

The event loop writes each batch to an idle child over its own socket and
reads back the frame texts, while the GIL stays with the loop.  Children are
forked from a forkserver that has imported this module (torch, the engine)
once; a child that dies fails its batch and is replaced.
"""

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import socket
from collections.abc import Sequence

import numpy as np

from .jobs import (EngineFactory, EngineThreads, InferenceError, Job, JobResult, Spec, as_inference_error,
                   one_torch_thread)


def _engine_process_main(connection: multiprocessing.connection.Connection, models: bytes, backend: str,
                         factory: EngineFactory) -> None:
    """A child of :class:`EngineProcesses`: compute each list of jobs received, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the whole group: the server ends us
    one_torch_thread()
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
