"""Fair share: each visitor's recent engine time, and whether it exceeds the share one visitor may use.

A visitor's usage is the engine-thread time of its frames (rasterising,
its part of the batch's engine call, encoding) summed with exponential
decay, time constant ``TAU_S``: for a steady rate ``r`` (seconds per
second) the sum tends to ``r · TAU_S``.  A visitor whose rate exceeds
``fair_share`` is over its share until it has used less for a while;
:meth:`Usage.wait_s` says how long, which is how long its next frame waits.
"""

import math

TAU_S = 1.0
# A visitor whose frames typically cost more than this many times an ordinary frame (the engine
# threads' warm-up frame, :attr:`Usage.ordinary_s`) is heavy: its frames are computed alone (the slow
# lane), and it is held to the fair share.  Relative, so that with the reference backend (~40 ms a
# frame for everyone) nobody is; a drawing redrawn whole after each change of its bounding box (4,000
# points: ~10 ms against ~0.5 ms) is.  Not relative to the other visitors: abusers may be the majority.
HEAVY_FACTOR = 3.0
HEAVY_FLOOR_S = 0.001  # below this no frame is heavy (timer noise)
# Visitors who left are forgotten once their usage has decayed below this, seconds.
FORGET_BELOW_S = 1e-6
PRUNE_EVERY = 1024  # charges between two sweeps for visitors who left
FRAME_WEIGHT = 0.3  # of the newest frame in a visitor's typical frame cost


class Usage:
    """Decayed engine time per visitor (``owner``); ``fair_share``: seconds per second, one thread = 1."""

    def __init__(self, fair_share: float) -> None:
        self.fair_share = fair_share
        self.used: dict[int, tuple[float, float]] = {}  # owner → (decayed seconds, as of this monotonic time)
        self.typical: dict[int, float] = {}  # owner → moving average of its frames' engine time, s
        self.ordinary_s = 0.0  # an ordinary frame's engine time, s (set by the batcher)
        self.charges = 0

    def _decayed(self, owner: int, now: float) -> float:
        seconds, at = self.used.get(owner, (0.0, now))
        return seconds * math.exp(-(now - at) / TAU_S)

    def charge(self, owner: int, seconds: float, now: float) -> None:
        """Add ``seconds`` of engine time used by ``owner`` at ``now``."""
        self.used[owner] = (self._decayed(owner, now) + seconds, now)
        # Averaged over ~3 frames: one frame slowed by a busy machine does not make a visitor heavy.
        self.typical[owner] = (1 - FRAME_WEIGHT) * self.typical.get(owner, seconds) + FRAME_WEIGHT * seconds
        self.charges += 1
        if self.charges % PRUNE_EVERY == 0:
            self.used = {key: (self._decayed(key, now), now) for key in self.used
                         if self._decayed(key, now) >= FORGET_BELOW_S}
            self.typical = {key: self.typical[key] for key in self.used}

    def rate(self, owner: int, now: float) -> float:
        """``owner``'s recent engine time per second of wall time."""
        return self._decayed(owner, now) / TAU_S

    def over_share(self, owner: int, now: float) -> bool:
        """Whether ``owner`` is heavy and uses more than its share (see :meth:`heavy`)."""
        return self.heavy(owner) and self.rate(owner, now) > self.fair_share

    def heavy(self, owner: int) -> bool:
        """Whether ``owner``'s frames typically cost ``HEAVY_FACTOR`` times an ordinary frame (and more
        than ``HEAVY_FLOOR_S``): its next one likely will."""
        typical = self.typical.get(owner, 0.0)
        return typical > HEAVY_FLOOR_S and typical > HEAVY_FACTOR * self.ordinary_s

    def wait_s(self, owner: int, now: float) -> float:
        """How long until ``owner``'s rate has decayed to its share (0: within it now)."""
        rate = self.rate(owner, now)
        return TAU_S * math.log(rate / self.fair_share) if rate > self.fair_share else 0.0
