"""The sans-I/O frame schedule (server/scheduling.py): the clock is an argument, nothing sleeps."""

import numpy as np
import pytest

from server.protocol import Effect, ProtocolError
from server.scheduling import (
    FRAME_BURST,
    START_WINDOW,
    TARGET_QUEUE_DELAY_S,
    Due,
    FlowWindow,
    FrameSchedule,
    FrameTicket,
    Wait,
)

RATE = 60.0
PAUSE_S = 0.15
FRAME = Effect()


def schedule(now: float = 0.0, rate: float | None = RATE, flow: FlowWindow | None = None) -> FrameSchedule:
    """A schedule past its first welcome and frame (number 1), so that tests start from a quiet visitor."""
    frames = FrameSchedule(now, rate, PAUSE_S, flow)
    assert frames.poll(now, on_pause=False) == Due(True, FrameTicket(1, False, 0, None))
    frames.sent(1, now)
    return frames


def issue(frames: FrameSchedule, now: float, on_pause: bool = False) -> FrameTicket:
    step = frames.poll(now, on_pause)
    assert isinstance(step, Due) and step.frame is not None, f"expected a frame at {now}, got {step}"
    frames.sent(step.frame.number, now)
    return step.frame


def test_first_poll_sends_the_welcome_and_the_empty_drawing_then_waits_for_input() -> None:
    frames = schedule()
    assert frames.idle
    assert frames.poll(0.0, on_pause=False) == Wait(None)


def test_input_until_the_frame_is_issued_folds_into_it() -> None:
    frames = schedule()
    for now in (1.0, 1.001, 1.002):
        frames.input(FRAME, stroke=True, now=now)
    assert not frames.idle
    assert issue(frames, 1.003) == FrameTicket(2, False, 3, 1.0)
    assert frames.poll(1.003, on_pause=False) == Wait(None)


def test_a_message_that_asks_for_no_frame_issues_none() -> None:
    frames = schedule()
    frames.input(Effect(frame=False, compare=("lrp",)), stroke=False, now=1.0)
    assert frames.poll(1.0, on_pause=False) == Wait(None)


def test_pacing_sends_a_burst_at_once_then_one_frame_per_interval() -> None:
    frames = schedule(now=0.0)
    frames.input(FRAME, stroke=True, now=10.0)  # the bucket refilled during the quiet spell
    issue(frames, 10.0)
    frames.input(FRAME, stroke=True, now=10.0)
    issue(frames, 10.0)
    frames.input(FRAME, stroke=True, now=10.001)
    step = frames.poll(10.001, on_pause=False)
    assert isinstance(step, Wait) and step.until == pytest.approx(10.0 + 1 / RATE)
    frames.input(FRAME, stroke=True, now=10.01)  # joins the held frame
    assert issue(frames, step.until) == FrameTicket(4, False, 2, 10.001)


def test_paced_frames_never_exceed_burst_plus_rate_times_window() -> None:
    frames, now, sent = schedule(now=-1.0), 0.0, 0
    while now < 1.0:  # input before every poll: the loop sends whenever allowed
        frames.input(FRAME, stroke=True, now=now)
        step = frames.poll(now, on_pause=False)
        if isinstance(step, Wait):
            assert step.until is not None and step.until > now
            now = step.until
        else:
            sent += 1
    assert RATE <= sent <= FRAME_BURST + RATE + 1


def test_unpaced_schedule_issues_a_frame_per_poll() -> None:
    frames = schedule(rate=None)
    for number in range(2, 12):
        frames.input(FRAME, stroke=True, now=0.0)
        assert issue(frames, 0.0).number == number


def test_the_welcome_is_never_held_by_pacing() -> None:
    frames = schedule(now=-1.0)
    for _ in range(FRAME_BURST):
        frames.input(FRAME, stroke=False, now=0.0)
        issue(frames, 0.0)
    frames.input(Effect(welcome=True), stroke=False, now=0.0)
    assert frames.poll(0.0, on_pause=False) == Due(True, None)
    assert frames.poll(0.0, on_pause=False) == Wait(pytest.approx(1 / RATE))


def test_on_pause_method_is_pending_while_drawing_then_woken_for_the_full_frame() -> None:
    frames = schedule()
    frames.input(FRAME, stroke=True, now=5.0)
    assert issue(frames, 5.0, on_pause=True).pending
    assert frames.poll(5.01, on_pause=True) == Wait(5.0 + PAUSE_S)
    assert issue(frames, 5.0 + PAUSE_S, on_pause=True) == FrameTicket(3, False, 0, None)
    assert frames.poll(6.0, on_pause=True) == Wait(None)


def test_a_later_frame_supersedes_the_pending_frames_wake_up() -> None:
    frames = schedule()
    frames.input(FRAME, stroke=True, now=5.0)
    assert issue(frames, 5.0, on_pause=True).pending
    frames.input(FRAME, stroke=False, now=5.05)  # e.g. configure to a per-frame method
    assert not issue(frames, 5.05, on_pause=False).pending
    assert frames.poll(5.0 + PAUSE_S, on_pause=False) == Wait(None)


def test_a_select_after_the_pause_is_not_pending() -> None:
    frames = schedule()
    frames.input(FRAME, stroke=True, now=5.0)
    frames.input(FRAME, stroke=False, now=5.0 + PAUSE_S)
    assert not issue(frames, 5.0 + PAUSE_S, on_pause=True).pending


def flowing(max_frames: int = 8, ack_timeout_s: float = 3.0) -> FrameSchedule:
    """An unpaced schedule with a flow window, frame 1 sent at -0.1 and acknowledged at 0 (round trip 0.1 s)."""
    frames = schedule(-0.1, rate=None, flow=FlowWindow(max_frames, ack_timeout_s, -0.1))
    frames.acknowledge(1, 0.0)
    return frames


def test_a_client_that_never_acknowledges_is_not_flow_controlled() -> None:
    frames = schedule(rate=None, flow=FlowWindow(8, 3.0, 0.0))
    for number in range(2, 30):
        frames.input(FRAME, stroke=True, now=0.0)
        assert issue(frames, 0.0).number == number


def test_at_most_the_window_is_unacknowledged_and_input_meanwhile_folds_into_the_next_frame() -> None:
    frames = flowing()
    for _ in range(START_WINDOW):
        frames.input(FRAME, stroke=True, now=0.1)
        issue(frames, 0.1)
    for now in (0.11, 0.12, 0.13):
        frames.input(FRAME, stroke=True, now=now)
    assert frames.poll(0.13, on_pause=False) == Wait(0.0 + 3.0)  # at the ack timeout at the latest
    frames.acknowledge(2, 0.2)
    assert issue(frames, 0.2) == FrameTicket(4, False, 3, 0.11)


def test_a_client_that_stops_acknowledging_gets_one_frame_per_ack_timeout() -> None:
    frames = flowing(ack_timeout_s=3.0)
    for _ in range(START_WINDOW):
        frames.input(FRAME, stroke=True, now=0.0)
        issue(frames, 0.0)
    frames.input(FRAME, stroke=True, now=0.5)
    assert frames.poll(0.5, on_pause=False) == Wait(3.0)
    assert issue(frames, 3.0).number == 4
    frames.input(FRAME, stroke=True, now=3.1)
    assert frames.poll(3.1, on_pause=False) == Wait(6.0)


@pytest.mark.parametrize(("number", "case"), [(1, "already acknowledged"), (3, "not sent"), (0, "never sent")])
def test_an_ack_of_a_frame_not_outstanding_is_refused(number: int, case: str) -> None:
    frames = flowing()
    frames.input(FRAME, stroke=True, now=0.0)
    issue(frames, 0.0)  # frame 2 is outstanding
    with pytest.raises(ProtocolError, match=f"ack of frame {number}"):
        frames.acknowledge(number, 0.1)


def run_link(flow: FlowWindow, round_trip_s: float, transmit_s: float, seconds: float,
             jitter_s: float = 0.0) -> FrameSchedule:
    """A paced schedule with ``flow``, driven with input before every poll for ``seconds`` over a link that carries
    one frame per ``transmit_s`` (frames wait for the link in a FIFO) and acknowledges each ``round_trip_s`` after
    it is through, plus up to ``jitter_s`` (a late paint, a busy proxy; acks stay in order)."""
    frames = FrameSchedule(0.0, RATE, PAUSE_S, flow)
    rng = np.random.default_rng(0)
    now, link_free_at, last_ack_at, acks = 0.0, 0.0, 0.0, []  # acks: (time, frame number), in order
    while now < seconds:
        frames.input(FRAME, stroke=True, now=now)
        step = frames.poll(now, on_pause=False)
        if isinstance(step, Due) and step.frame is not None:
            frames.sent(step.frame.number, now)
            link_free_at = max(now, link_free_at) + transmit_s
            last_ack_at = max(last_ack_at, link_free_at + round_trip_s + rng.uniform(0.0, jitter_s))
            acks.append((last_ack_at, step.frame.number))
            continue
        assert isinstance(step, Wait) and step.until is not None  # input is always due
        now = min([step.until] + [at for at, _ in acks[:1]])
        while acks and acks[0][0] <= now:
            frames.acknowledge(acks.pop(0)[1], now)
    return frames


def test_the_window_grows_on_a_long_round_trip_without_queueing_up_to_the_frame_rate() -> None:
    flow = FlowWindow(max_frames=12, ack_timeout_s=3.0, now=0.0)
    frames = run_link(flow, round_trip_s=0.15, transmit_s=0.0, seconds=2.0)
    assert flow.size >= 9  # 60 frames/s × 0.15 s in flight, within a few round trips (slow start)
    assert frames.issued >= 0.8 * RATE * 2


def test_the_window_reaches_the_frame_rate_through_a_jittery_page_and_proxy() -> None:
    flow = FlowWindow(max_frames=12, ack_timeout_s=3.0, now=0.0)
    frames = run_link(flow, round_trip_s=0.15, transmit_s=0.0, seconds=10.0, jitter_s=0.06)
    assert frames.issued >= 0.8 * RATE * 10


@pytest.mark.parametrize("transmit_s", [0.021, 0.04, 0.1])
def test_the_window_keeps_frames_from_queueing_on_a_slow_link(transmit_s: float) -> None:
    flow = FlowWindow(max_frames=12, ack_timeout_s=3.0, now=0.0)
    frames = run_link(flow, round_trip_s=0.15, transmit_s=transmit_s, seconds=10.0)
    # What the link carries, within a fifth, and each frame queued behind at most ~one target delay of others.
    assert frames.issued >= 0.8 * min(RATE, 1 / transmit_s) * 10
    assert flow.size <= (0.15 + transmit_s + 2 * TARGET_QUEUE_DELAY_S) / transmit_s + 1


def test_the_base_round_trip_is_the_smallest_of_the_last_ten_seconds() -> None:
    flow, now = FlowWindow(max_frames=12, ack_timeout_s=3.0, now=0.0), 0.0
    for number, round_trip_s in enumerate([0.05] * 5 + [0.3] * 60, start=1):  # the link got slower for good
        flow.sent(number, now)
        now += round_trip_s
        flow.acknowledge(number, now)
        if number == 6:
            assert flow.base_rtt_s == pytest.approx(0.05) and flow.size == START_WINDOW - 1  # looks like queueing
    assert flow.base_rtt_s == pytest.approx(0.3)  # 10 s later the slower link is the new base


def test_a_client_that_never_acknowledges_costs_bounded_memory() -> None:
    frames = schedule(rate=None, flow=FlowWindow(8, 3.0, 0.0))
    for _ in range(2, 10_000):
        frames.input(FRAME, stroke=True, now=0.0)
        issue(frames, 0.0)
    assert frames.flow is not None and len(frames.flow.sent_at) <= 64
    frames.acknowledge(9_999, 1.0)  # a late first ack still opts in
    assert frames.flow.active and frames.flow.acked == 9_999
