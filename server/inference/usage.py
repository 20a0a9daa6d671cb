"""Fair share: each visitor's recent engine time, and whether it exceeds the share one visitor may use.

A visitor's usage is the engine-thread time of its frames (rasterising,
its part of the batch's engine call, encoding) summed with exponential
decay, time constant ``TAU_S``: for a steady rate ``r`` (seconds per
second) the sum tends to ``r · TAU_S``.  A visitor whose rate exceeds
``fair_share`` is over its share until it has used less for a while;
:meth:`Usage.wait_s` says how long, which is how long its next frame waits.

Only *heavy* visitors are held to the share.  What a visitor controls is
its drawing, so heaviness is about rasterising: a frame's *excess* is the
time its raster took beyond ``HEAVY_FACTOR`` ordinary frames (whole frames:
an ordinary digit's raster takes a fraction of one, even redrawn whole);
a visitor is heavy while its excess, summed with the same decay, is above
``HEAVY_EXCESS`` ordinary frames.  Summed, not averaged: a visitor who
makes one frame in five costly (moving its drawing's bounding box back and
forth, so that 4,000 points are redrawn) is heavy, though its frames cost
little on average.  Not the whole frame's time: a lone visitor's frames
take 2–3 times the CPU time of the warm-up's (caches gone cold between
frames), the same for everyone, and no reason to hold anyone back.
"""

import math

TAU_S = 1.0
# A raster taking longer than this many ordinary frames (the engine threads' warm-up frame,
# :attr:`Usage.ordinary_s`) counts towards heaviness.  Relative, so that it holds on a slower machine, and
# a drawing redrawn whole after each change of its bounding box (4,000 points: ~8 ms against ~1 ms) is
# heavy.  Not relative to the other visitors: abusers may
# be the majority.
HEAVY_FACTOR = 3.0
# Heavy: excess above this many ordinary frames (decayed over TAU_S).  The redrawing abuser piles up
# ~50 ordinary frames of excess per second; one 6 ms raster against an ordinary 1 ms frame adds 3.
HEAVY_EXCESS = 8.0
HEAVY_FLOOR_S = 0.001  # no visitor is heavy on less excess than this (timer noise)
# Visitors who left are forgotten once their usage has decayed below this, seconds.
FORGET_BELOW_S = 1e-6
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
        """Forget visitors whose sum has decayed below ``FORGET_BELOW_S``."""
        self.sums = {owner: (self.get(owner, now), now) for owner in self.sums
                     if self.get(owner, now) >= FORGET_BELOW_S}


class Usage:
    """Decayed engine time per visitor (``owner``); ``fair_share``: seconds per second, one thread = 1."""

    def __init__(self, fair_share: float) -> None:
        self.fair_share = fair_share
        self.used = Decayed()  # every frame's engine time, s
        self.excess = Decayed()  # the part of costly rasters above HEAVY_FACTOR ordinary frames, s
        self.ordinary_s = 0.0  # an ordinary frame's engine time, s (set by the batcher)
        self.charges = 0

    def charge(self, owner: int, seconds: float, raster_s: float, now: float) -> None:
        """Add ``seconds`` of engine time used by ``owner``'s frame at ``now``, ``raster_s`` of them its raster.

        CPU time of the engine thread, not wall time: a frame that waited for a core costs no more.
        """
        self.used.add(owner, seconds, now)
        self.excess.add(owner, max(0.0, raster_s - HEAVY_FACTOR * self.ordinary_s), now)
        self.charges += 1
        if self.charges % PRUNE_EVERY == 0:
            self.used.prune(now)
            self.excess.prune(now)

    def rate(self, owner: int, now: float) -> float:
        """``owner``'s recent engine time per second of wall time."""
        return self.used.get(owner, now) / TAU_S

    def heavy(self, owner: int, now: float) -> bool:
        """Whether ``owner``'s recent costly rasters add up to ``HEAVY_EXCESS`` ordinary frames beyond
        ``HEAVY_FACTOR`` each (and to more than ``HEAVY_FLOOR_S``): its next frames may be costly too."""
        excess = self.excess.get(owner, now)
        return excess > HEAVY_FLOOR_S and excess > HEAVY_EXCESS * self.ordinary_s

    def over_share(self, owner: int, now: float) -> bool:
        """Whether ``owner`` is heavy and uses more than its share."""
        return self.heavy(owner, now) and self.rate(owner, now) > self.fair_share

    def wait_s(self, owner: int, now: float) -> float:
        """How long until ``owner``'s rate has decayed to its share (0: within it now)."""
        rate = self.rate(owner, now)
        return TAU_S * math.log(rate / self.fair_share) if rate > self.fair_share else 0.0
