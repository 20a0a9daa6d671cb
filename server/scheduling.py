"""Sans-I/O frame scheduling of one visitor: what its frame loop sends next, and when.

No I/O and no ``await`` here, and the clock is an argument (seconds,
monotonic).  The I/O layer (:mod:`server.session`) reports what happened:
:meth:`FrameSchedule.input` (a message was applied),
:meth:`FrameSchedule.sent` (a frame was handed to the socket),
:meth:`FrameSchedule.acknowledge` (the page painted a frame); and asks
:meth:`FrameSchedule.poll` what to do: :class:`Due` (send now) or
:class:`Wait` (poll again at a time, or after the next report).

Four rules (docs/architecture.md, "Frame scheduling"):

1. **Latest wins.**  Input marks a frame due; everything that arrives until
   the frame is issued joins it.  One frame is computed at a time.
2. **Pacing.**  At most ``max_frames_per_s`` frames per second on average,
   :data:`FRAME_BURST` at once (a :class:`~server.ratelimit.TokenBucket`).
3. **On-pause methods.**  While the pen moved less than ``pause_s`` ago, a
   frame of an on-pause method is *pending* (its heatmap is skipped); the
   schedule wakes ``pause_s`` after the last stroke for the complete frame.
4. **Flow control.**  Once the client has acknowledged a frame, at most
   :attr:`FlowWindow.size` frames are unacknowledged: the rest of the input
   waits, folded into the next frame, instead of queueing in socket and proxy
   buffers (:class:`FlowWindow`).
"""

from collections import deque
from dataclasses import dataclass

from .protocol import Effect, ErrorCode, ProtocolError
from .ratelimit import TokenBucket

# Frames a visitor may get at once after a quiet spell.  One would pace every
# frame a full 1/60 s after the previous one, so input arriving at 60 Hz, out of
# phase with that grid, waits 0–16.7 ms for its slot; with two, the bucket has
# refilled by the time the next input comes and absorbs the pointer's jitter.
FRAME_BURST = 2

# Flow window, in frames.  Two in flight let the server compute the next frame
# while the page paints the last one; more only help on links whose round trip
# is longer than two frame intervals (FlowWindow grows the window there).
START_WINDOW = 2
# The most frames in flight: 60 frames/s over a 200 ms round trip.
MAX_WINDOW = 12
# A client that acknowledged frames and then stopped (a hidden tab does not
# paint) gets one frame per this many seconds: never nothing, never a backlog.
ACK_TIMEOUT_S = 3.0
# Queueing delay (a round trip minus the smallest recent one) above which the
# window shrinks; below half of it, a window that held frames back grows.  A
# page's paint adds up to one display frame (16.7 ms) of noise to each sample.
TARGET_QUEUE_DELAY_S = 0.05
# How long the smallest round trip is remembered (the link may change).
BASE_RTT_WINDOW_S = 10.0
# Send times remembered for frames not yet acknowledged: more than the window ever holds.
SENT_KEPT = 64


@dataclass(frozen=True)
class FrameTicket:
    """One frame to compute and send now.

    ``number``: the frame's ``frame`` field (1, 2, … per connection).
    ``pending``: its on-pause heatmap waits for stillness (sent as ``null``).
    ``folded``: input messages it answers (0: a frame without new input, the pause's).
    ``oldest_input_at``: when the oldest of them arrived (``None`` if none).
    """

    number: int
    pending: bool
    folded: int
    oldest_input_at: float | None


@dataclass(frozen=True)
class Due:
    """Send now: a ``welcome`` first if ``welcome``, then ``frame`` unless ``None``."""

    welcome: bool
    frame: FrameTicket | None


@dataclass(frozen=True)
class Wait:
    """Nothing to send now: poll again at ``until`` (``None``: after the next report)."""

    until: float | None


class FlowWindow:
    """How many frames may be unacknowledged, measured from the page's acknowledgements.

    Off until the client's first ``ack`` (a client that never acknowledges is
    not limited).  Then frames are issued while fewer than :attr:`size` are
    unacknowledged.  Each ``ack`` gives a round-trip sample (frame handed to the
    socket → its ack); the sample minus the smallest recent one is the time the
    frame queued behind others (in socket, proxy and radio buffers, or in a busy
    page).  Delay-based, as TCP Vegas (Brakmo & Peterson, 1995), once per round
    trip on the least queueing its acks saw: above :data:`TARGET_QUEUE_DELAY_S`
    → one frame fewer in flight; below half of it while frames waited for a
    credit → one more (twice as many until the first decrease: slow start).
    A client that stops acknowledging gets one frame per
    ``ack_timeout_s``, never nothing.
    """

    def __init__(self, max_frames: int, ack_timeout_s: float, now: float) -> None:
        self.max_frames = max_frames
        self.ack_timeout_s = ack_timeout_s
        self.size = min(START_WINDOW, max_frames)
        self.active = False
        self.acked = 0
        self.sent_at: dict[int, float] = {}  # unacknowledged frames' send times, the last SENT_KEPT
        # Round trips of the last BASE_RTT_WINDOW_S as (time, s), each smaller than every later one: the
        # first is the window's minimum (a sliding-window minimum, O(1) per ack).
        self.rtt_minima: deque[tuple[float, float]] = deque()
        self.progress_at = now  # the last ack, or the last frame sent on the ack timeout
        self.limited = False  # a frame waited for a credit in this round trip
        # Until the first sign of queueing the window doubles per round trip (as TCP's slow start), so that a
        # fast link with a long round trip reaches 60 frames/s within a few round trips; then one frame more.
        self.slow_start = True
        self.settled_through = 0  # the round trip ends when a frame numbered above this is acknowledged
        self.round_queueing_s = float("inf")

    def ready_at(self, issued: int, now: float) -> float:
        """When frame ``issued + 1`` may be issued: ``now`` if a credit is free, else at the ack timeout."""
        if not self.active or issued - self.acked < self.size:
            return now
        self.limited = True
        return self.progress_at + self.ack_timeout_s

    def issue(self, number: int, now: float) -> None:
        """Frame ``number`` was issued; one issued without a credit restarts the ack timeout."""
        if self.active and number - 1 - self.acked >= self.size:
            self.progress_at = now

    def sent(self, number: int, now: float) -> None:
        self.sent_at[number] = now
        if len(self.sent_at) > SENT_KEPT:  # a client that does not acknowledge: forget the oldest
            del self.sent_at[next(iter(self.sent_at))]

    def acknowledge(self, number: int, now: float) -> None:
        """The page painted frame ``number`` (and so every earlier one); ``number`` has been sent."""
        sent_at = self.sent_at.get(number)  # None: sent too long ago to be remembered, no sample
        for earlier in [key for key in self.sent_at if key <= number]:
            del self.sent_at[earlier]
        self.active, self.acked, self.progress_at = True, number, now
        if sent_at is not None:
            sample = now - sent_at
            self._remember(sample, now)
            self._adjust(sample - self.rtt_minima[0][1], number)

    def _remember(self, sample: float, now: float) -> None:
        while self.rtt_minima and self.rtt_minima[-1][1] >= sample:
            self.rtt_minima.pop()
        self.rtt_minima.append((now, sample))
        while self.rtt_minima[0][0] < now - BASE_RTT_WINDOW_S:
            self.rtt_minima.popleft()

    @property
    def base_rtt_s(self) -> float | None:
        """The smallest recent round trip, s (``None`` before the first ack)."""
        return self.rtt_minima[0][1] if self.rtt_minima else None

    def _adjust(self, queueing_s: float, number: int) -> None:
        """Once per round trip, from the least queueing any of its acks saw (one late paint or a busy
        proxy is no queue: a queue delays every frame of the round)."""
        self.round_queueing_s = min(self.round_queueing_s, queueing_s)
        if number <= self.settled_through:
            return  # the round trip since the last decision is not over
        queueing_s, self.round_queueing_s = self.round_queueing_s, float("inf")
        if queueing_s > TARGET_QUEUE_DELAY_S and self.size > 1:
            self.size -= 1
            self.slow_start = False
        elif queueing_s < TARGET_QUEUE_DELAY_S / 2 and self.limited:
            self.size = min(self.max_frames, 2 * self.size if self.slow_start else self.size + 1)
        self.limited = False
        self.settled_through = max(self.sent_at, default=number)


class FrameSchedule:
    """One visitor's frame scheduling: due flags, pacing, the pause wake-up, flow control.

    Parameters
    ----------
    now:
        The clock at connection, s.
    max_frames_per_s:
        Pacing rate; ``None``: unpaced (the benchmark's one-frame-per-message baseline).
    pause_s:
        Stillness after the last stroke before an on-pause method's heatmap is computed, s.
    flow:
        The flow window; ``None``: acknowledgements are checked but never hold a frame.

    The first poll is due a ``welcome`` and a frame (of the empty drawing).
    """

    def __init__(self, now: float, max_frames_per_s: float | None, pause_s: float,
                 flow: FlowWindow | None) -> None:
        self.pacer = None if max_frames_per_s is None else TokenBucket(max_frames_per_s, FRAME_BURST, now)
        self.pause_s = pause_s
        self.flow = flow
        self.welcome_due = True
        self.frame_due = True
        self.issued = 0  # number of the last frame issued
        self.last_sent = 0  # number of the last frame handed to the socket
        self.acked = 0
        self.unframed = 0
        self.oldest_input_at: float | None = None
        self.last_stroke_at = -float("inf")
        self.still_at: float | None = None  # when a pending frame's pause is reached

    @property
    def idle(self) -> bool:
        """Nothing is due (a pending frame's pause may still come)."""
        return not (self.welcome_due or self.frame_due)

    def input(self, effect: Effect, stroke: bool, now: float) -> None:
        """An applied client message asks for ``effect``; ``stroke``: it moved the pen."""
        self.welcome_due |= effect.welcome
        if effect.frame:
            self.frame_due = True
            self.unframed += 1
            if self.oldest_input_at is None:
                self.oldest_input_at = now
        if stroke:
            self.last_stroke_at = now

    def poll(self, now: float, on_pause: bool) -> Due | Wait:
        """What to send at ``now``; ``on_pause``: the visitor's method waits for stillness."""
        if self.still_at is not None and now >= self.still_at:
            self.still_at, self.frame_due = None, True
        welcome, self.welcome_due = self.welcome_due, False
        ready_at = self._ready_at(now) if self.frame_due else None
        frame = self._issue(now, on_pause) if ready_at is not None and ready_at <= now else None
        if welcome or frame is not None:
            return Due(welcome, frame)
        wakes = [time for time in (ready_at, self.still_at) if time is not None]
        return Wait(min(wakes, default=None))

    def sent(self, number: int, now: float) -> None:
        """Frame ``number`` was handed to the socket at ``now``."""
        self.last_sent = number
        if self.flow is not None:
            self.flow.sent(number, now)

    def acknowledge(self, number: int, now: float) -> None:
        """The client's ``ack`` of frame ``number``; raise :class:`ProtocolError` unless it is new and sent."""
        if not self.acked < number <= self.last_sent:
            raise ProtocolError(ErrorCode.OUT_OF_RANGE, f"ack of frame {number}: expected a frame sent and not "
                                f"yet acknowledged, {self.acked + 1} .. {self.last_sent}")
        self.acked = number
        if self.flow is not None:
            self.flow.acknowledge(number, now)

    def _ready_at(self, now: float) -> float:
        """When the due frame may be issued: the later of its pacing token and its flow credit."""
        ready_at = now if self.pacer is None else now + self.pacer.wait_s(now)
        if self.flow is not None:
            ready_at = max(ready_at, self.flow.ready_at(self.issued, now))
        return ready_at

    def _issue(self, now: float, on_pause: bool) -> FrameTicket:
        if self.pacer is not None:
            self.pacer.admit(now)
        self.issued += 1
        if self.flow is not None:
            self.flow.issue(self.issued, now)
        still_at = self.last_stroke_at + self.pause_s
        pending = on_pause and now < still_at
        self.still_at = still_at if pending else None  # this frame supersedes an earlier pending one's wake
        ticket = FrameTicket(self.issued, pending, self.unframed, self.oldest_input_at)
        self.frame_due, self.unframed, self.oldest_input_at = False, 0, None
        return ticket
