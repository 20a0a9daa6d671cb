"""Fair share: each visitor's recent engine time, and whether it exceeds the share one visitor may use.

A visitor's usage is the engine-thread time of its frames (rasterising,
its part of the batch's engine call, encoding) summed with exponential
decay, time constant ``TAU_S``: for a steady rate ``r`` (seconds per
second) the sum tends to ``r · TAU_S``.  A visitor whose rate exceeds
``fair_share`` is over its share until it has used less for a while;
:meth:`Usage.wait_s` says how long, which is how long its next frame waits.

Only *heavy* visitors are held to the share.  What a visitor controls is
its drawing, so heaviness is about rasterising, measured as work, not time:
a frame's raster work is the pen's path drawn, in canvas pixels
(:attr:`server.raster.RasterCache.work_px`; a digit's frame draws at most
~600, redrawn whole), and its *excess* is the work beyond
``HEAVY_WORK_PX``.  A visitor is heavy while its excess, summed with the
same decay, is above ``HEAVY_EXCESS_PX``.  Summed, not averaged: a visitor
who makes one frame in five costly (moving its drawing's bounding box back
and forth, so that 4,000 points are redrawn: ~400,000 pixels) is heavy,
though its frames are cheap on average.  Work, not time: on a virtual
machine whose host is busy, the same frame took 1 ms or 30 ms of the
thread's CPU time, and a lone visitor drawing a digit must never pass for
an abuser.
"""

import math

TAU_S = 1.0
# A frame whose raster draws more than this, canvas pixels, counts the rest towards heaviness: 25× the
# most a digit's frame draws; a 4,096-point zig-zag's frames draw ~3,400 once its canvas is cached.
HEAVY_WORK_PX = 16_384.0
# Heavy: excess above this, canvas pixels, decayed over TAU_S.  One whole redraw of a 4,000-point
# drawing (~400,000) is; a scribble of 4,096 short strokes redrawn whole (~38,000) is once it does so
# three times within a second or so.
HEAVY_EXCESS_PX = 65_536.0
# Visitors who left are forgotten once their sums (seconds, pixels) have decayed below this.
FORGET_BELOW = 1e-6
PRUNE_EVERY = 1024  # charges between two sweeps for visitors who left


class Decayed:
    """Sums per visitor that decay exponentially with time constant ``TAU_S``."""

    def __init__(self) -> None:
        self.sums: dict[int, tuple[float, float]] = {}  # owner → (decayed sum, as of this monotonic time)

    def get(self, owner: int, now: float) -> float:
        value, at = self.sums.get(owner, (0.0, now))
        return value * math.exp(-(now - at) / TAU_S)

    def add(self, owner: int, value: float, now: float) -> None:
        self.sums[owner] = (self.get(owner, now) + value, now)

    def prune(self, now: float) -> None:
        """Forget visitors whose sum has decayed below ``FORGET_BELOW``."""
        self.sums = {owner: (self.get(owner, now), now) for owner in self.sums
                     if self.get(owner, now) >= FORGET_BELOW}


class Usage:
    """Decayed engine time per visitor (``owner``); ``fair_share``: seconds per second, one thread = 1."""

    def __init__(self, fair_share: float) -> None:
        self.fair_share = fair_share
        self.used = Decayed()  # every frame's engine time, s
        self.excess = Decayed()  # raster work beyond HEAVY_WORK_PX a frame, canvas pixels
        self.charges = 0

    def charge(self, owner: int, seconds: float, work_px: float, now: float) -> None:
        """Add ``owner``'s frame at ``now``: ``seconds`` of engine time, ``work_px`` of raster work.

        CPU time of the engine thread, not wall time: a frame that waited for a core costs no more.
        """
        self.used.add(owner, seconds, now)
        self.excess.add(owner, max(0.0, work_px - HEAVY_WORK_PX), now)
        self.charges += 1
        if self.charges % PRUNE_EVERY == 0:
            self.used.prune(now)
            self.excess.prune(now)

    def rate(self, owner: int, now: float) -> float:
        """``owner``'s recent engine time per second of wall time."""
        return self.used.get(owner, now) / TAU_S

    def heavy(self, owner: int, now: float) -> bool:
        """Whether ``owner``'s recent rasters drew ``HEAVY_EXCESS_PX`` beyond ``HEAVY_WORK_PX`` each: its
        next frames may be costly too."""
        return self.excess.get(owner, now) > HEAVY_EXCESS_PX

    def over_share(self, owner: int, now: float) -> bool:
        """Whether ``owner`` is heavy and uses more than its share."""
        return self.heavy(owner, now) and self.rate(owner, now) > self.fair_share

    def wait_s(self, owner: int, now: float) -> float:
        """How long until ``owner``'s rate has decayed to its share (0: within it now)."""
        rate = self.rate(owner, now)
        return TAU_S * math.log(rate / self.fair_share) if rate > self.fair_share else 0.0
