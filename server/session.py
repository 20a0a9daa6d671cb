"""The asyncio layer of one visitor's WebSocket: input in as it arrives, frames out latest-wins.

Three tasks per connection:

* the **receive loop** applies each message to the visitor's
  :class:`~server.protocol.VisitorState` as soon as it arrives (refusals are
  answered with an ``error`` at once) and reports it to the visitor's
  :class:`~server.scheduling.FrameSchedule`;
* the **frame loop** asks the schedule what is due (a ``welcome``, a frame)
  and sends it, or sleeps until the schedule's wake-up time or the next
  report.  Which frame leaves when (latest-wins, pacing, the on-pause wake-up)
  is decided there, sans-I/O; this loop only computes and sends;
* the **compare loop** answers ``compare`` requests beside the frames, so
  that a comparison's slow methods (LIME, KernelSHAP: tens of ms each) do
  not hold up the live frames.  A newer request replaces one not yet begun.
  It answers ``sanity`` requests too (the checks of the current map:
  model randomisation, deletion against a random order), after any
  comparison due, so that a connection never has more than two jobs queued
  for frames and comparisons;
* the **counterfactual loop** answers ``counterfactual`` requests the same
  way (a search takes ~0.1–0.3 s), on a worker thread as a slow job;
* the **teach loop** answers ``teach`` and ``forget`` in order, each once its
  database write is committed (:class:`server.teaching.teacher.Desk`).

All five loops send (the receive loop its ``error`` answers).  Messages cannot
interleave: uvicorn's sans-I/O protocol (:mod:`server.wsprotocol`) encodes
each ``websocket.send`` and writes it to the transport whole, without
awaiting in between.

With ``coalesce=False`` (the benchmark's baseline) the receive loop waits for
each message's frame before reading the next, and frames are not paced.

The session ends on the peer's close, an idle timeout (1000), a binary
message (1003), repeated refused messages (1008), an inference failure
(1011) or a send that times out (the peer stopped reading: the TCP
connection is dropped).  Server shutdown (1012) is uvicorn's: it closes every
WebSocket, and the receive loop sees the disconnect.
"""

import asyncio
import itertools
import logging
from dataclasses import dataclass
from typing import Any

from starlette import status
from starlette.websockets import WebSocket, WebSocketDisconnect

from .catalog import Catalog
from .counterfactuals import Counterfactuals
from .frames import encode_comparison, encode_concepts, encode_error, encode_frame, encode_sanity, encode_welcome
from .inference.batcher import Batcher
from .inference.jobs import DEADLINE_EXCEEDED, InferenceError, Job, JobResult, Spec
from .logs import event
from .metrics import Metrics
from .photo import prepare_upload
from .protocol import (
    Ack,
    Clear,
    CounterfactualAsk,
    ErrorCode,
    Forget,
    Limits,
    Photo,
    ProtocolError,
    Stroke,
    View,
    VisitorState,
    decode_message,
)
from .raster import RasterCache
from .ratelimit import ErrorWindow, TokenBucket
from .scheduling import ACK_TIMEOUT_S, MAX_WINDOW, Due, FlowWindow, FrameSchedule, FrameTicket, Wait
from .settings import Settings
from .teaching.teacher import Desk, Teacher
from .versions import Versions
from .wsprotocol import ABORT_EXTENSION, CAUSE_KEY

_visitor_ids = itertools.count(1)


@dataclass(frozen=True)
class Services:
    """What every session of one app shares; all of it read-only or internally synchronised."""

    settings: Settings
    catalog: Catalog
    limits: Limits
    batcher: Batcher
    metrics: Metrics
    counterfactuals: Counterfactuals
    teacher: Teacher
    versions: Versions


@dataclass(frozen=True)
class SanityRenderer:
    """The ``sanity`` message of a sanity job's result, as text, made on its engine thread."""

    view: View

    def __call__(self, result: JobResult) -> str:
        return encode_sanity(self.view, result.frames[0], result.sanity[0], result.compute_ms).decode()


@dataclass(frozen=True)
class FrameRenderer:
    """The ``frame`` message of a job's result, as text: the job's ``render``, run on its engine thread."""

    view: View
    ticket: FrameTicket

    def __call__(self, result: JobResult) -> str:
        return encode_frame(self.view, result.image, result.frames[0], self.ticket.pending, self.ticket.number,
                            result.compute_ms).decode()


def rendered(result: JobResult) -> str:
    """The message text of a job that had a ``render``."""
    if result.text is None:
        raise RuntimeError("a job with a renderer came back without its text")
    return result.text


class CloseConnection(Exception):
    """End the session with WebSocket close ``code`` (RFC 6455 §7.4.1) and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class PeerNotReading(Exception):
    """A send did not complete within ``send_timeout_s``."""


class IdleTimer:
    """Ends ``timeout`` (expires it now) once nothing was received for ``idle_s``.

    One loop timer for the whole session, moved on lazily: a message only notes the time
    (:meth:`received`); when the timer fires it either finds a message newer than ``idle_s`` and waits
    for that one's turn, or expires ``timeout``.  An ``asyncio.timeout`` around each receive cost a
    timer, a task lookup and a cancellation per message: ~8 % of the event loop's time at 30 visitors
    drawing continuously (py-spy ``--gil``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_s: float, timeout: asyncio.Timeout) -> None:
        self.loop = loop
        self.idle_s = idle_s
        self.timeout = timeout
        self.last = loop.time()
        self.alarm = loop.call_at(self.last + idle_s, self._check)

    def received(self) -> None:
        self.last = self.loop.time()

    def cancel(self) -> None:
        self.alarm.cancel()

    def _check(self) -> None:
        now, due = self.loop.time(), self.last + self.idle_s
        if now >= due:
            self.timeout.reschedule(now)
        else:
            self.alarm = self.loop.call_at(due, self._check)


class Session:
    """One visitor: its state, its loops, its sends."""

    def __init__(self, websocket: WebSocket, services: Services) -> None:
        self.websocket = websocket
        self.services = services
        self.settings = services.settings
        self.metrics = services.metrics
        self.visitor = next(_visitor_ids)
        self.loop = asyncio.get_running_loop()
        now = self.loop.time()
        self.state = VisitorState(services.catalog.options(), services.limits,
                                  model=self.settings.model or "")
        self.bucket = TokenBucket(self.settings.max_messages_per_s, self.settings.max_messages_per_s, now)
        self.errors = ErrorWindow(self.settings.max_errors, self.settings.error_window_s)
        # The baseline (coalesce=False) sends a frame per message, unpaced, without flow control.
        coalesce = self.settings.coalesce
        self.schedule = FrameSchedule(now, self.settings.max_frames_per_s if coalesce else None,
                                      self.settings.pause_ms / 1000.0,
                                      FlowWindow(MAX_WINDOW, ACK_TIMEOUT_S, now) if coalesce else None)
        self.wakeup = asyncio.Event()  # a report to the schedule: the frame loop polls it again
        self.caught_up = asyncio.Event()  # nothing due (coalesce=False waits on it after each message)
        self.compare_due: tuple[str, ...] = ()
        self.compare_wanted = asyncio.Event()
        self.counterfactual_due: CounterfactualAsk | None = None
        self.counterfactual_wanted = asyncio.Event()
        self.sanity_due = False
        self.concepts_due: str | None = None
        self.desk = Desk(services.teacher, self.settings.max_teach_per_minute, now)
        # The engine key of each model's version: kept until the visitor clears the pad (server.versions).
        self.pins = services.versions.pins()
        self.raster = RasterCache()  # the canvas of the last frame's drawing: a frame draws only new ink
        self.peer_close = (status.WS_1005_NO_STATUS_RCVD, "disconnected")

    async def run(self) -> None:
        """Serve the (accepted) WebSocket until it ends; never raises for peer behaviour."""
        self.metrics.open_connections.inc()
        # The peer's address as uvicorn sees it: behind a trusted proxy, the one X-Forwarded-For names.
        client = self.websocket.client.host if self.websocket.client is not None else None
        event("visitor_connected", visitor=self.visitor, model=self.state.model, client=client)
        code, reason = status.WS_1006_ABNORMAL_CLOSURE, "cancelled"  # if uvicorn cancels us at shutdown
        try:
            code, reason = await self._serve()
        finally:
            self.metrics.open_connections.dec()
            self.metrics.closed_connections.labels(str(code)).inc()
            event("visitor_closed", visitor=self.visitor, code=code, reason=reason, **self._link())

    def _link(self) -> dict[str, Any]:
        """What flow control measured of the visitor's link (nothing if it never acknowledged a frame)."""
        flow = self.schedule.flow
        if flow is None or flow.base_rtt_s is None:
            return {}
        return {"frames": self.schedule.last_sent, "rtt_ms": round(flow.base_rtt_s * 1000, 1), "window": flow.size}

    async def _serve(self) -> tuple[int, str]:
        """Run the five loops; return the close code and reason that ended the session."""
        tasks = [asyncio.create_task(loop()) for loop in (self._receive_loop, self._frame_loop, self._compare_loop,
                                                          self._counterfactual_loop, self._teach_loop)]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            ended = done.pop().exception()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return await self._end(ended)

    async def _end(self, ended: BaseException | None) -> tuple[int, str]:
        """Close (or drop) the connection as ``ended`` demands; ``None``: the peer closed."""
        match ended:
            case None:
                return self.peer_close
            case WebSocketDisconnect():
                return ended.code, "peer gone"
            case CloseConnection():
                await self._close(ended.code, ended.reason)
                return ended.code, ended.reason
            case PeerNotReading():
                self._abort()
                return status.WS_1006_ABNORMAL_CLOSURE, "peer stopped reading"
            case InferenceError():
                event("inference_failed", logging.ERROR, visitor=self.visitor, error=ended.error_type)
                await self._close(status.WS_1011_INTERNAL_ERROR, "inference failed")
                return status.WS_1011_INTERNAL_ERROR, "inference failed"
            case _:
                logging.getLogger("xai").error("session failed", exc_info=ended,
                                               extra={"event": "session_failed", "fields": {"visitor": self.visitor}})
                await self._close(status.WS_1011_INTERNAL_ERROR, "internal error")
                return status.WS_1011_INTERNAL_ERROR, "internal error"

    # Receiving

    async def _receive_loop(self) -> None:
        """Apply messages until the peer closes (returns) or the session must end (raises), or until
        nothing came for ``idle_timeout_s`` (:class:`IdleTimer`)."""
        idle = asyncio.timeout(None)
        timer = IdleTimer(self.loop, self.settings.idle_timeout_s, idle)
        try:
            async with idle:
                await self._receive_messages(timer)
        except TimeoutError:
            if not idle.expired():
                raise
            raise CloseConnection(status.WS_1000_NORMAL_CLOSURE, "idle timeout") from None
        finally:
            timer.cancel()

    async def _receive_messages(self, timer: IdleTimer) -> None:
        while True:
            message = await self.websocket.receive()
            timer.received()
            if message["type"] == "websocket.disconnect":
                # The peer's close reason is its text: not logged, like every other message content; the
                # protocol's own cause (a keepalive timeout) is ours.
                self.peer_close = (int(message.get("code", status.WS_1005_NO_STATUS_RCVD)),
                                   message.get(CAUSE_KEY, "disconnected"))
                return
            text = message.get("text")
            if text is None:
                self.metrics.rejected_messages.labels("binary").inc()
                raise CloseConnection(status.WS_1003_UNSUPPORTED_DATA, "binary messages are not supported")
            await self._handle_text(text)

    async def _handle_text(self, text: str) -> None:
        now = self.loop.time()
        try:
            message = decode_message(text)
            if isinstance(message, Ack):
                # Exempt from the message rate: acks are bounded on their own (only a frame sent and not yet
                # acknowledged may be, so no more acks than frames), and one refused would leave flow control
                # waiting for it.  A bogus one is refused and counts toward the refusal limit.
                self.schedule.acknowledge(message.frame, now)
                self.wakeup.set()  # a credit may be free
                return
            if not self.bucket.admit(now):
                raise ProtocolError(ErrorCode.RATE_LIMITED,
                                    f"more than {self.settings.max_messages_per_s} messages per second")
            if isinstance(message, Photo):
                message = await asyncio.to_thread(prepare_upload, message)  # decoding: ms of CPU, not on the loop
            if isinstance(message, Forget):
                self.desk.submit(message, now)
                return
            effect = self.state.apply(message)
            if effect.teach is not None:
                self.desk.submit(effect.teach, now, self.pins[effect.teach.view.model])
            if isinstance(message, Clear):
                self.pins = self.services.versions.pins()
        except ProtocolError as error:
            await self._refuse(error, now)
            return
        self.schedule.input(effect, isinstance(message, Stroke), now)
        if effect.compare:
            self.compare_due = effect.compare
            self.compare_wanted.set()
        if effect.counterfactual is not None:
            self.counterfactual_due = effect.counterfactual
            self.counterfactual_wanted.set()
        if effect.sanity:
            self.sanity_due = True
            self.compare_wanted.set()
        if effect.concepts is not None:
            self.concepts_due = effect.concepts
            self.compare_wanted.set()
        self.caught_up.clear()
        self.wakeup.set()
        if not self.settings.coalesce:
            await self.caught_up.wait()

    async def _refuse(self, error: ProtocolError, now: float) -> None:
        self.metrics.rejected_messages.labels(str(error.code)).inc()
        event("message_refused", logging.DEBUG, visitor=self.visitor, code=str(error.code))
        await self._send(encode_error(error.code, error.message, error.seq))
        if self.errors.record(now):
            raise CloseConnection(status.WS_1008_POLICY_VIOLATION,
                                  f"more than {self.settings.max_errors} refused messages "
                                  f"in {self.settings.error_window_s:g} s")

    # Framing

    async def _frame_loop(self) -> None:
        """Send what the schedule says is due; otherwise sleep until its wake-up time or the next report."""
        while True:
            step = self.schedule.poll(self.loop.time(), self.services.catalog.on_pause(self.state.method))
            match step:
                case Due():
                    await self._send_due(step)
                case Wait():
                    if self.schedule.idle:
                        self.caught_up.set()
                    await self._sleep(step.until)

    async def _sleep(self, until: float | None) -> None:
        """Until the loop time ``until`` (``None``: no limit) or the next report, whichever comes first."""
        self.wakeup.clear()
        # A loop timer that sets the event, not an asyncio.timeout: no task cancellation per frame.
        alarm = None if until is None else self.loop.call_at(until, self.wakeup.set)
        try:
            await self.wakeup.wait()
        finally:
            if alarm is not None:
                alarm.cancel()

    async def _send_due(self, due: Due) -> None:
        view = self.state.view()
        if due.welcome:
            await self._send_welcome()
        if due.frame is not None:
            await self._send_frame(view, due.frame)

    async def _compare_loop(self) -> None:
        """Send one ``comparison`` per request, then one ``sanity`` per request, for the drawing as it is
        when the work begins."""
        while True:
            await self.compare_wanted.wait()
            self.compare_wanted.clear()
            methods, self.compare_due = self.compare_due, ()
            sanity, self.sanity_due = self.sanity_due, False
            concepts, self.concepts_due = self.concepts_due, None
            if methods:
                view = self.state.view()
                try:
                    await self._send_comparison(view, methods)
                except InferenceError as error:
                    if error.error_type != DEADLINE_EXCEEDED:
                        raise
                    # The comparison only is lost; the live frames go on (their own deadline closes 1011).
                    await self._send(encode_error(ErrorCode.COMPUTE_TIMEOUT, error.message, view.seq))
            if sanity:
                await self._send_sanity(self.state.view())
            if concepts is not None:
                await self._send_concepts(self.state.view(), concepts)

    async def _counterfactual_loop(self) -> None:
        """Send one ``counterfactual`` (or its ``error``) per request, for the drawing as it was asked about;
        nothing if the model changed meanwhile (the page would take it for the new model's)."""
        while True:
            await self.counterfactual_wanted.wait()
            self.counterfactual_wanted.clear()
            ask, self.counterfactual_due = self.counterfactual_due, None
            if ask is None:
                continue
            try:
                text = await self.services.batcher.call(self.services.counterfactuals.answer, ask)
            except InferenceError as error:
                # A search past the compute deadline (a loaded server) ends this answer, not the session.
                event("counterfactual_failed", logging.WARNING, visitor=self.visitor, error=error.error_type)
                text = encode_error(ErrorCode.COUNTERFACTUAL_FAILED, f"the search could not be completed "
                                    f"({error.error_type}); ask again", ask.view.seq).decode()
            if self.state.model == ask.view.model:
                await self._send_text(text)

    async def _teach_loop(self) -> None:
        await self.desk.serve(self._send)

    async def _send_welcome(self) -> None:
        settings = self.settings
        timing = {"max_message_bytes": settings.max_message_bytes, "max_frames_per_s": settings.max_frames_per_s,
                  "idle_timeout_s": settings.idle_timeout_s, "ping_interval_s": settings.ping_interval_s,
                  "pause_ms": settings.pause_ms}
        await self._send(encode_welcome(self.services.catalog, self.state.view(), self.services.limits, timing))

    async def _send_frame(self, view: View, ticket: FrameTicket) -> None:
        slow = self.services.catalog.on_pause(view.method) and not ticket.pending
        job = Job(self.pins[view.model], view.strokes, (self._spec(view, ticket.pending),),
                  render=FrameRenderer(view, ticket), owner=self.visitor, raster=self.raster, photo=view.photo)
        result = await self.services.batcher.compute(job, slow=slow)
        await self._send_text(rendered(result))
        self.schedule.sent(ticket.number, self.loop.time())
        self.metrics.frames_sent.inc()
        self.metrics.frames_coalesced.inc(max(0, ticket.folded - 1))
        if ticket.oldest_input_at is not None:
            self.metrics.stroke_to_frame_seconds.observe(self.loop.time() - ticket.oldest_input_at)

    @staticmethod
    def _spec(view: View, pending: bool) -> Spec:
        """The map a frame needs; a pending frame skips its costly on-pause heatmap."""
        return Spec(view.output, view.hidden, view.method, view.rule, heatmap=not pending, versus=view.versus,
                    knockout=view.knockout, layer=view.layer)

    async def _send_comparison(self, view: View, methods: tuple[str, ...]) -> None:
        """One job per method, so that each map's ``compute_ms`` is its own; nothing if the model changed
        meanwhile (the page dropped its comparison on the new ``welcome``: maps of the old model would
        pass for the new one's)."""
        maps = []
        target: int | None = view.output
        for method in methods:
            result = await self.services.batcher.compute(
                Job(self.pins[view.model], view.strokes,
                    (Spec(target, None, method, view.rule, knockout=view.knockout, layer=view.layer),),
                    photo=view.photo),
                slow=self.services.catalog.on_pause(method))
            data = result.frames[0]
            target = int(data.target)  # later methods explain the same class as the first
            maps.append((method, data, result.compute_ms))
        if self.state.model == view.model and target is not None:  # methods: at least one (protocol)
            await self._send(encode_comparison(view, target, maps, self.services.catalog))

    async def _send_sanity(self, view: View) -> None:
        """The sanity checks of the visitor's map; nothing if the model changed meanwhile (as a comparison)."""
        job = Job(self.pins[view.model], view.strokes, (self._spec(view, pending=False),), render=SanityRenderer(view),
                  sanity=True, photo=view.photo)
        result = await self.services.batcher.compute(job, slow=True)
        if self.state.model == view.model:
            await self._send_text(rendered(result))

    async def _send_concepts(self, view: View, layer: str) -> None:
        """Every channel's CRP map of ``layer`` towards the frame's class: one job of one spec per channel."""
        channels = self.services.catalog.models[view.model].channels[layer]
        specs = tuple(Spec(view.output, k, "lrp", view.rule, knockout=view.knockout, layer=layer)
                      for k in range(channels))
        result = await self.services.batcher.compute(Job(self.pins[view.model], view.strokes, specs, photo=view.photo),
                                                     slow=True)
        if self.state.model == view.model:
            await self._send(encode_concepts(view, layer, result.frames, result.compute_ms))

    # Sending and closing

    async def _send(self, data: bytes) -> None:
        """Send one JSON text message (UTF-8 ``data``); see :meth:`_send_text`."""
        await self._send_text(data.decode())

    async def _send_text(self, text: str) -> None:
        """Send one JSON text message, or raise :class:`PeerNotReading` after ``send_timeout_s``."""
        try:
            async with asyncio.timeout(self.settings.send_timeout_s):
                await self.websocket.send({"type": "websocket.send", "text": text})
        except TimeoutError:
            raise PeerNotReading() from None

    async def _close(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(self.settings.send_timeout_s):
                await self.websocket.close(code, reason)
        except TimeoutError:
            self._abort()
        except WebSocketDisconnect:
            return  # the peer left first: nothing to close

    def _abort(self) -> None:
        """Drop the TCP connection at once (see :mod:`server.wsprotocol`)."""
        extension = self.websocket.scope.get("extensions", {}).get(ABORT_EXTENSION)
        if extension is None:
            raise RuntimeError(f"the server does not offer the {ABORT_EXTENSION!r} extension")
        extension["abort"]()
