"""Per-visitor rate limits, sans-I/O: the caller passes the clock (seconds, monotonic)."""

from collections import deque

# Tokens below one that still count as one: the clock ``wait_s`` answers, added to ``now``,
# refills the bucket to 1 − 1e-16 or so in floating point.
_ROUNDING = 1e-9


class TokenBucket:
    """Admit at most ``rate_per_s`` events per second on average, ``burst`` at once.

    The bucket starts full; each admitted event takes one token; tokens come
    back continuously at ``rate_per_s``.  In any window of ``T`` seconds at
    most ``burst + rate_per_s · T`` events are admitted.
    """

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now

    def admit(self, now: float) -> bool:
        """Take a token if one is left at time ``now``; ``False``: refuse the event."""
        self._refill(now)
        if self.tokens < 1.0 - _ROUNDING:
            return False
        self.tokens = max(0.0, self.tokens - 1.0)
        return True

    def wait_s(self, now: float) -> float:
        """How long from ``now`` until :meth:`admit` would admit an event (0: at once)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 - _ROUNDING else (1.0 - self.tokens) / self.rate_per_s


class ErrorWindow:
    """Count events in a sliding window; :meth:`record` says when more than ``allowed`` fell in it."""

    def __init__(self, allowed: int, window_s: float) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self.times: deque[float] = deque(maxlen=allowed + 1)

    def record(self, now: float) -> bool:
        """Record one event at ``now``; ``True`` once more than ``allowed`` are within the window."""
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window_s:
            self.times.popleft()
        return len(self.times) > self.allowed
