"""Strokes → the 28×28 image the model sees, made the way MNIST was made.

MNIST digits (LeCun et al. 1998, "Gradient-based learning applied to document
recognition", §III.A) were scanned ink, size-normalised so their bounding box
fits 20×20 pixels with the aspect ratio kept, anti-aliased, and then
translated so that their centre of mass sits at the centre of the 28×28
field.  :func:`rasterize` does the same with a drawing:

1. the centre-line bounding box of all points is scaled (aspect kept) so the
   inked box, pen included, is ``BOX_PX`` = 20 pixels on its longer side;
2. the strokes are drawn with solid ``cv2.polylines`` (in chunks of
   ``CHUNK_SEGMENTS`` segments) on a canvas ``SUPERSAMPLE`` times finer than
   the output (the reduction of step 3 anti-aliases), with a pen of ``PEN_PX`` output pixels whatever the size of
   the drawing; a :class:`RasterCache` keeps that canvas between frames;
3. the canvas is cropped so the ink's centre of mass lands on ``COM_PX``,
   or as near as keeps all ink inside the field, and reduced to 28×28 by
   pixel-area averaging (``cv2.INTER_AREA``).
"""

import math
from collections.abc import Sequence

import cv2
import numpy as np

from model_store.sizes import IMAGE_PX

BOX_PX = 20.0
# Pen width in output pixels as drawn, about a seventh of the 20-px box.  Chosen
# on the 500 held-out embedded training digits, re-rastered from their
# skeletons (model_store.strokes) at random canvas sizes: pens of 1.85 to 2.85 px
# score alike (the first default model 96.0–96.8 %, h16 94.6–94.8 %; the solid pen
# of 2.25 / 2.75 px: default 96.8 / 97.4 %, h16 95.2 / 94.6 %, vs 97.0 / 94.8 % for
# the anti-aliased 2.35 px it replaced), and of the two widths a solid pen can have
# near there (see _THICKNESS) 2.75 px is nearer MNIST's ink per digit (109 vs 102
# summed pixel values; 2.25 px: 91).  The official test set only measures the
# result (tests/test_raster.py).
PEN_PX = 2.75
SUPERSAMPLE = 4
# Centre of mass of MNIST digits in pixel-index coordinates (row, column):
# the mean over the 5,000 embedded digits is (13.99, 14.00), spread 0.29 px.
COM_PX = 14.0
# A drawing whose longer side is below this (canvas fractions) is a dot or a
# dash: it is not blown up to the 20-px box, which would turn it into a blob.
MIN_EXTENT = 0.02
# cv2 draws a solid (LINE_8) line of thickness t as 2·floor(t/2) + 1 canvas
# pixels of ink across (measured on long slanted lines: 8.9 for t = 8, 10.9 for
# t = 10, ±0.2 px with the slope), so widths come in steps of 2 canvas pixels:
# take the even thickness nearest the pen (10 → 11 canvas pixels = 2.75 output
# pixels at SUPERSAMPLE = 4).  Solid, not LINE_AA: the anti-aliased pen cost
# 4–5× as much to draw (74 vs 17 µs a frame of the continuous replay), and at
# 4× supersampling the area reduction smooths the edges as well.
_CV2_EXTRA_WIDTH = 1.0
_THICKNESS = max(2, 2 * round((PEN_PX * SUPERSAMPLE - _CV2_EXTRA_WIDTH) / 2))
# Strokes are drawn as polylines of this many segments, each starting at the
# last point of the one before (solid ink drawn twice where two chunks meet
# is the same ink), so a drawing that grows costs only its open chunk: see
# RasterCache.  A 4,096-point zig-zag redrawn in full took 14–24 ms.
CHUNK_SEGMENTS = 32
# Fixed-point fraction bits for cv2 drawing coordinates (1/16 canvas pixel).
_SHIFT_BITS = 4
# Room around the field for the centre-of-mass shift: ink at least one pen
# wide can sit anywhere in the field.  Real digits need a few pixels (on the
# embedded MNIST digits the centre of mass lies at most 4.5 px, 99th
# percentile 3.2 px, from the box centre); a drawing that needs more (a dot
# far from a heavy stroke) is pushed against the border instead of cut.
_MARGIN_PX = math.ceil((IMAGE_PX - PEN_PX) / 2)
_CANVAS = (IMAGE_PX + 2 * _MARGIN_PX) * SUPERSAMPLE
_CROP = IMAGE_PX * SUPERSAMPLE

# A bounding box ``(x_low, y_low, x_high, y_high)``, in canvas fractions or fixed-point canvas coordinates.
Box = tuple[float, float, float, float]
_NO_POINTS: Box = (math.inf, math.inf, -math.inf, -math.inf)
# OpenCV's own thread pool (one thread per core) split these 216-pixel canvases across threads: the hand-off
# cost more than the work, and on a busy machine a frame waited for a second core.  Engine threads run
# frames side by side instead.
cv2.setNumThreads(1)
# Canvas-pixel indices as floats, for the centre of mass (sliced, never built per frame).
_INDEX = np.arange(_CANVAS, dtype=np.float64)


def _read_points(points: list[Sequence[float]], strokes: Sequence[int]) -> tuple[np.ndarray, list[list[float]]]:
    """``(n, 2)`` float64 x, y of ``points`` (of strokes numbered ``strokes``, one per point, for the
    errors), checked, and the same as Python lists; extra fields per point are dropped.

    A frame reads a handful of new points: checked in Python, they cost less than two array calls.
    """
    try:
        xy = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        # Ragged points (some carry time or pressure, some not): read x, y one by one.
        xy = np.array([_point_xy(point, strokes, k) for k, point in enumerate(points)],
                      dtype=np.float64).reshape(-1, 2)
    if xy.size == 0:
        return xy.reshape(0, 2), []
    if xy.ndim != 2 or xy.shape[1] < 2:
        raise ValueError(f"stroke {strokes[0]}: expected a list of [x, y, ...] points, got shape {xy.shape}")
    xy = xy[:, :2]
    listed: list[list[float]] = xy.tolist()
    if all(0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 for x, y in listed):  # NaN fails the comparisons
        return xy, listed
    bad = ~np.isfinite(xy) | (xy < 0.0) | (xy > 1.0)
    if bad.any():
        k = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"{_where(strokes, k)}: coordinates must be finite canvas fractions in [0, 1], "
                         f"got x={xy[k, 0]}, y={xy[k, 1]}")
    raise AssertionError("a point failed the range check but no coordinate is out of range")


def _where(strokes: Sequence[int], k: int) -> str:
    """``stroke s point p`` of the ``k``-th point read (``strokes``: the stroke of each point read)."""
    stroke = strokes[k]
    return f"stroke {stroke} point {k - strokes.index(stroke)}"


def _point_xy(point: Sequence[float], strokes: Sequence[int], k: int) -> tuple[float, float]:
    try:
        return float(point[0]), float(point[1])
    except (TypeError, ValueError, IndexError) as error:
        raise ValueError(f"{_where(strokes, k)}: expected [x, y, ...] numbers, got {point!r}") from error


def rasterize(strokes: Sequence[Sequence[Sequence[float]]], cache: "RasterCache | None" = None) -> np.ndarray:
    """Draw ``strokes`` as an MNIST-style digit.

    Parameters
    ----------
    strokes:
        A list of strokes; a stroke is a list of points ``[x, y, ...]`` in
        canvas fractions, ``x, y ∈ [0, 1]``, origin top left, on a square
        canvas.  Fields after ``x, y`` (time, pressure) are ignored.  Strokes
        without points are skipped; a one-point stroke is a dot.
    cache:
        The :class:`RasterCache` of the drawing's last rasterisation (one per
        visitor), or ``None``.  The image is the same with or without it; with
        it, only what was added since is drawn (see :class:`RasterCache`).

    Returns
    -------
    numpy.ndarray
        ``(28, 28)`` float32 in [0, 1], row = y.  All zeros for a drawing
        without points.

    Raises
    ------
    ValueError
        A point is not ``[x, y, ...]``, or a coordinate is non-finite or
        outside [0, 1].
    """
    cache = RasterCache() if cache is None else cache
    canvas = cache.draw(strokes)
    if canvas is None:
        return np.zeros((IMAGE_PX, IMAGE_PX), dtype=np.float32)
    x_low, y_low, x_high, y_high = cache.ink
    return _centre_and_reduce(canvas, _inked_span(y_low, y_high), _inked_span(x_low, x_high))


class RasterCache:
    """One drawing's points and supersampled canvas as last drawn, so that a frame costs only what changed.

    Strokes are drawn in chunks of ``CHUNK_SEGMENTS`` segments, in order: a
    stroke's chunk ``k`` is the polyline of its points ``32k … 32k + 32``
    (each chunk starts at the last point of the one before; a one-point
    stroke is a dot).  The cache keeps every point read, in drawing order, as
    one array (:attr:`xy`, with each stroke's first index in :attr:`starts`),
    their fixed-point canvas coordinates (:attr:`fixed`), and the canvas
    holding every *complete* chunk (all strokes but the last, and the last
    stroke's full chunks).  A drawing that extends the cached one (points
    appended to its last stroke, new strokes) under the same bounding box
    adds its new complete chunks to that canvas and draws the open chunk (at
    most ``CHUNK_SEGMENTS`` segments) on a copy.  Anything else (undo, a
    point outside the box, which rescales the drawing) draws every chunk
    again from the kept arrays, in native code; only new points are ever
    read from Python objects, and each step is one numpy call for all of
    them, not one per stroke.  Either way the pixels are exactly those of a
    drawing from scratch: the same polylines, drawn in the same order.

    :attr:`work_px` says how much the last :meth:`draw` drew: the length of
    the pen's path in canvas pixels (the jumps between strokes included)
    plus one pen width per point.  Unlike its time, it does not depend on how
    busy the machine is: the fair share tells a costly drawing by it.

    Not thread-safe: one visitor's frames are computed one at a time.
    """

    def __init__(self) -> None:
        self.strokes: tuple[tuple[Sequence[float], ...], ...] = ()
        self.xy = np.zeros((0, 2))  # every point, in drawing order, canvas fractions
        self.starts: list[int] = []  # index in xy of each stroke's first point
        # The pen's path from the first point to each, canvas fractions (times the scale: canvas pixels).
        self.path: list[float] = []
        self.span = _NO_POINTS  # bounding box of xy
        self.work_px = 0.0
        self._clear_canvas(self.span)

    def _clear_canvas(self, box: Box) -> None:
        """A blank canvas for a drawing whose points span ``box`` (canvas fractions)."""
        self.box = box
        x_low, y_low, x_high, y_high = box
        inked = x_low <= x_high
        centre = ((x_low + x_high) / 2, (y_low + y_high) / 2) if inked else (0.0, 0.0)  # no points: any transform
        extent = max(x_high - x_low, y_high - y_low, MIN_EXTENT) if inked else MIN_EXTENT
        # Canvas pixels per canvas fraction: the centre line spans the box minus one pen width.
        self.scale = (BOX_PX - PEN_PX) * SUPERSAMPLE / extent
        self.offset = np.array([(_CANVAS - 1) / 2 - centre[0] * self.scale, (_CANVAS - 1) / 2 - centre[1] * self.scale])
        self.fixed = np.zeros((0, 2), dtype=np.int32)  # xy's first points as fixed-point canvas coordinates
        self.complete = np.zeros((_CANVAS, _CANVAS), dtype=np.uint8)  # every complete chunk drawn
        self.drawn = (0, 0)  # complete chunks drawn: strokes before [0], and points of stroke [0] before [1]

    def draw(self, strokes: Sequence[Sequence[Sequence[float]]]) -> np.ndarray | None:
        """The canvas of ``strokes`` (``None``: no points), drawing what the cache lacks."""
        extends = self._read(tuple(tuple(stroke) for stroke in strokes))
        self.work_px = 0.0
        if len(self.xy) == 0:
            self._clear_canvas(self.span)
            return None
        if not (extends and self.span == self.box):
            self._clear_canvas(self.span)
        self._fix()
        self._draw_complete()
        return self._render()

    def _read(self, drawing: tuple[tuple[Sequence[float], ...], ...]) -> bool:
        """Bring :attr:`xy` up to ``drawing``, reading only new points; whether it extends the cached one."""
        old = self.strokes
        same = 0  # leading strokes unchanged
        while same < min(len(old), len(drawing)) and drawing[same] == old[same]:
            same += 1
        grown = same < min(len(old), len(drawing)) and drawing[same][:len(old[same])] == old[same]
        extends = same == len(old) or (grown and same == len(old) - 1)
        kept = len(old[same]) if grown else 0  # points kept of stroke `same`
        starts = self.starts[:same + grown]
        keep = (starts[-1] + kept) if grown else (self.starts[same] if same < len(old) else len(self.xy))
        new: list[Sequence[float]] = []
        owners: list[int] = []  # the stroke of each new point, for errors
        for index in range(same, len(drawing)):
            if not (grown and index == same):
                starts.append(keep + len(new))
            points = drawing[index][kept:] if grown and index == same else drawing[index]
            new.extend(points)
            owners.extend([index] * len(points))
        added, listed = _read_points(new, owners)
        self.xy = np.concatenate([self.xy[:keep], added]) if keep and len(added) else \
            (self.xy[:keep] if keep else added)
        self.path = _path(self.path[:keep], self.xy[keep - 1].tolist() if keep else None, listed)
        self.strokes, self.starts = drawing, starts
        # The span grows with the new points only, unless points were taken away.
        self.span = _span(listed, self.span) if extends else _span(self.xy.tolist(), _NO_POINTS)
        return extends

    def _fix(self) -> None:
        """Fixed-point canvas coordinates for the points not yet fixed."""
        new = self.xy[len(self.fixed):]
        if not len(new):
            return
        fixed = np.rint((new * self.scale + self.offset) * (1 << _SHIFT_BITS)).astype(np.int32)
        self.fixed = np.concatenate([self.fixed, fixed]) if len(self.fixed) else fixed

    @property
    def ink(self) -> Box:
        """The box of the fixed-point canvas coordinates of every point: the transform of :attr:`span`
        (it is monotonic and rounds as ``np.rint`` does), in four float operations, not an array's min and max."""
        (x_offset, y_offset), scale, unit = self.offset.tolist(), self.scale, 1 << _SHIFT_BITS
        x_low, y_low, x_high, y_high = self.span
        return (round((x_low * scale + x_offset) * unit), round((y_low * scale + y_offset) * unit),
                round((x_high * scale + x_offset) * unit), round((y_high * scale + y_offset) * unit))

    def _stroke_end(self, stroke: int) -> int:
        return self.starts[stroke + 1] if stroke + 1 < len(self.starts) else len(self.fixed)

    def _chunks(self, stroke: int, start: int, end: int) -> list[np.ndarray]:
        """Stroke ``stroke``'s polylines from its point ``start`` (its first, or a chunk's first, shared with
        the chunk before) up to point ``end`` (exclusive).

        cv2 draws nothing for a one-point polyline: a dot is its point repeated (a round dot).
        """
        first = self.starts[stroke]
        if end - start < 2:
            return [np.repeat(self.fixed[first:first + 1], 2, axis=0)] if start == first == end - 1 else []
        return [self.fixed[at:min(at + CHUNK_SEGMENTS + 1, end)] for at in range(start, end - 1, CHUNK_SEGMENTS)]

    def _draw_complete(self) -> None:
        """Draw the chunks that the new points complete onto :attr:`complete`."""
        stroke, start = self.drawn
        last = len(self.starts) - 1
        finished: list[np.ndarray] = []
        begin = start
        while stroke < last:  # strokes before the last one are finished: all their chunks
            finished += self._chunks(stroke, start, self._stroke_end(stroke))
            stroke, start = stroke + 1, self.starts[stroke + 1]
        # The last stroke's chunks that have all their points; the open chunk is drawn by _render.
        full = max(0, len(self.fixed) - start - 1) // CHUNK_SEGMENTS
        if full:
            finished += self._chunks(last, start, start + full * CHUNK_SEGMENTS + 1)
        self.work_px += self._polylines(self.complete, finished, begin)
        self.drawn = (last, start + full * CHUNK_SEGMENTS)

    def _render(self) -> np.ndarray:
        """The complete chunks' canvas plus the last stroke's open chunk, on a copy."""
        canvas = self.complete.copy()
        stroke, start = self.drawn
        self.work_px += self._polylines(canvas, self._chunks(stroke, start, len(self.fixed)), start)
        return canvas

    def _polylines(self, canvas: np.ndarray, polylines: list[np.ndarray], first: int) -> float:
        """Draw ``polylines``, which run through the points from index ``first`` on; return the pen's work in
        canvas pixels (see :attr:`work_px`)."""
        if not polylines:
            return 0.0
        cv2.polylines(canvas, polylines, isClosed=False, color=255, thickness=_THICKNESS,
                      lineType=cv2.LINE_8, shift=_SHIFT_BITS)
        points = sum(len(polyline) for polyline in polylines)
        last = min(len(self.fixed) - 1, first + points - 1)
        return float(self.path[last] - self.path[first]) * self.scale + points * _THICKNESS


def _path(kept: list[float], before: list[float] | None, added: list[list[float]]) -> list[float]:
    """The cumulative path ``kept`` (extended in place) continued through ``added`` points, from point
    ``before`` (``None``: the drawing starts with ``added``)."""
    if not added:
        return kept
    last_x, last_y = before if before is not None else added[0]
    total = kept[-1] if kept else 0.0
    for x, y in added:
        total += math.hypot(x - last_x, y - last_y)
        kept.append(total)
        last_x, last_y = x, y
    return kept


def _span(points: list[list[float]], box: Box) -> Box:
    """``box`` grown to hold every point of ``points`` (``[x, y]`` lists)."""
    if not points:
        return box
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return min(box[0], min(xs)), min(box[1], min(ys)), max(box[2], max(xs)), max(box[3], max(ys))


def _inked_span(low: float, high: float) -> slice:
    """Canvas pixels along one axis that the pen can have inked between these fixed-point coordinates."""
    reach = _THICKNESS // 2 + 2  # half the pen, its odd centre pixel and rounding
    return slice(max(0, (int(low) >> _SHIFT_BITS) - reach), min(_CANVAS, (int(high) >> _SHIFT_BITS) + reach + 1))


def _centre_and_reduce(canvas: np.ndarray, ink_rows: slice, ink_columns: slice) -> np.ndarray:
    """Crop ``canvas`` so the ink's centre of mass lands on ``COM_PX``, then average down to 28×28.

    ``ink_rows``, ``ink_columns``: spans that hold every inked pixel (the canvas is mostly the empty
    margin; summing only the inked block takes a fifth of the time).
    """
    # Projections give the first moments at a quarter of cv2.moments' cost (0.03 vs 0.14 ms), summed into
    # int32 (at most 216 · 255 a sum): cv2.reduce is the faster down the columns, numpy along the rows.
    inked = canvas[ink_rows, ink_columns]
    columns = cv2.reduce(inked, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[0]
    total = float(columns.sum())  # all the ink, both projections' sum
    left = _crop_start(columns, ink_columns.start, total)
    top = _crop_start(inked.sum(axis=1, dtype=np.int32), ink_rows.start, total)
    crop = canvas[top:top + _CROP, left:left + _CROP]
    small = cv2.resize(crop, (IMAGE_PX, IMAGE_PX), interpolation=cv2.INTER_AREA)
    return small.astype(np.float32) / np.float32(255.0)


def _crop_start(projection: np.ndarray, offset: int, total: float) -> int:
    """Where the crop starts along one axis: centre of mass on ``COM_PX``, all ink inside.

    ``projection``: the ink summed across the other axis, over canvas pixels ``offset`` … on; ``total``: its sum.
    """
    # Output pixel index p covers canvas pixels [p·S, (p+1)·S): its centre is p·S + (S−1)/2.
    target = COM_PX * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2
    index = _INDEX[offset:offset + len(projection)]
    centred = round(float(projection @ index) / total - target)
    inked = np.flatnonzero(projection)
    return min(max(centred, offset + int(inked[-1]) - _CROP + 1), offset + int(inked[0]))
