"""Answer a visitor's ``teach`` and ``forget`` (docs/protocol.md, "teach"): read, store, acknowledge.

:class:`Teacher` is shared by the sessions of one process; :class:`Desk` is one
visitor's queue of requests, answered in order by one task of the session, so
that a database write never holds up the visitor's frames or input.  A
``taught`` is sent only after the drawing's row is committed.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn

import orjson
from sqlalchemy.exc import SQLAlchemyError

from server.frames import encode_error
from server.inference.batcher import Batcher
from server.inference.jobs import InferenceError, Job, Spec
from server.logs import event
from server.protocol import DEFAULT_METHOD, ErrorCode, Forget, ProtocolError, TeachAsk
from server.ratelimit import TokenBucket
from server.versions import Versions

from .drawings import DrawingStore, Reading

MAX_PENDING = 4  # unanswered teach/forget requests one visitor may have; one more is refused


class Teacher:
    """Reads a drawing with its model (on an engine thread), stores it, deletes it by token."""

    def __init__(self, store: DrawingStore, batcher: Batcher, versions: Versions) -> None:
        self.store = store
        self.batcher = batcher
        self.versions = versions

    async def teach(self, ask: TeachAsk, key: str) -> bytes:
        """The ``taught`` message once the drawing is committed, or an ``error`` (nothing stored).

        ``key``: the engine key of the version the visitor sees (:mod:`server.versions`): it reads the drawing.
        """
        view = ask.view
        try:
            reading = await self.read(view.model, key, view.strokes)
            # Shielded: a visitor who leaves mid-commit does not cancel the write halfway.
            stored = await asyncio.shield(self.store.add(view.strokes, ask.label, reading))
        except (InferenceError, SQLAlchemyError, OSError) as error:
            event("teach_failed", logging.ERROR, error=type(error).__name__)
            return encode_error(ErrorCode.TEACH_FAILED, "the drawing could not be stored; nothing was kept, "
                                "try again", view.seq)
        event("drawing_taught", id=stored.id, label=ask.label, prediction=reading.prediction)
        return orjson.dumps({"type": "taught", "id": stored.id, "delete_token": stored.delete_token})

    async def forget(self, request: Forget) -> bytes:
        """The ``forgotten`` message once the row is deleted, or an ``error``."""
        try:
            drawing_id = await asyncio.shield(self.store.forget(request.delete_token))
        except (SQLAlchemyError, OSError) as error:
            event("forget_failed", logging.ERROR, error=type(error).__name__)
            return encode_error(ErrorCode.TEACH_FAILED, "the drawing could not be deleted; try again", request.seq)
        if drawing_id is None:
            return encode_error(ErrorCode.UNKNOWN_TOKEN, "no stored drawing has this delete_token", request.seq)
        event("drawing_forgotten", id=drawing_id)
        return orjson.dumps({"type": "forgotten", "id": drawing_id})

    async def read(self, model: str, key: str, strokes: tuple[tuple[tuple[float, float], ...], ...]) -> Reading:
        """Model ``model``'s reading of ``strokes`` by the version of engine key ``key``, computed as a frame is
        (without its heatmap)."""
        spec = Spec(None, None, DEFAULT_METHOD, None, heatmap=False)
        frame = (await self.batcher.compute(Job(key, strokes, (spec,)))).frames[0]
        return Reading(model, self.versions.version(key), int(frame.prediction),
                       tuple(float(p) for p in frame.probabilities.tolist()))


class Desk:
    """One visitor's pending ``teach``/``forget`` requests, at most ``per_minute`` a minute."""

    def __init__(self, teacher: Teacher, per_minute: int, now: float) -> None:
        self.teacher = teacher
        self.per_minute = per_minute
        self.bucket = TokenBucket(per_minute / 60.0, per_minute, now)
        self.pending: asyncio.Queue[tuple[TeachAsk | Forget, str]] = asyncio.Queue(MAX_PENDING)

    def submit(self, request: TeachAsk | Forget, now: float, key: str = "") -> None:
        """Queue ``request`` (a teach: read by engine key ``key``) or raise :class:`ProtocolError`
        (``rate_limited``) without queuing it."""
        seq = request.view.seq if isinstance(request, TeachAsk) else request.seq
        if self.pending.full():
            raise ProtocolError(ErrorCode.RATE_LIMITED, f"{MAX_PENDING} teach/forget requests are still "
                                "being answered", seq)
        if not self.bucket.admit(now):
            raise ProtocolError(ErrorCode.RATE_LIMITED, f"more than {self.per_minute} teach/forget requests "
                                "per minute", seq)
        self.pending.put_nowait((request, key))

    async def serve(self, send: Callable[[bytes], Awaitable[None]]) -> NoReturn:
        """Answer each request in order with ``send``; runs until cancelled."""
        while True:
            request, key = await self.pending.get()
            if isinstance(request, TeachAsk):
                await send(await self.teacher.teach(request, key))
            else:
                await send(await self.teacher.forget(request))
