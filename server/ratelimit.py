"""Per-visitor rate limits, sans-I/O: the caller passes the clock (seconds, monotonic)."""

from collections import deque


class TokenBucket:
    """Admit at most ``rate_per_s`` events per second on average, ``burst`` at once.

    The bucket starts full; each admitted event takes one token; tokens come
    back continuously at ``rate_per_s``.
    """

    def __init__(self, rate_per_s: float, burst: float, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = burst
        self.updated = now

    def admit(self, now: float) -> bool:
        """Take a token if one is left at time ``now``; ``False``: refuse the event."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


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
