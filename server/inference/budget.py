"""The slow lane's CPU budget: per visitor and per process, enforced by holding work back, sans-I/O.

The slow lane (on-pause maps, comparisons, sanity checks, counterfactual
searches) runs beside the live frames, in the same process.  Its thread is
niced, but it still holds the process's GIL while it runs Python, and every
GIL hand-over to the event loop or the frame thread can wait the switch
interval: three visitors asking for KernelSHAP sanity checks at the rate
limit raised a drawing bystander's p99 20–47× (issue 29.1).  Two budgets
bound how much of the time that can happen:

* **per process** (``lane_budget``, a fraction of one core): after a slow job
  that took ``c`` seconds of its thread's CPU, the lane starts nothing for
  ``c · (1/lane_budget − 1)``: over any stretch it computes at most that
  fraction of the time;
* **per visitor** (``visitor_share``, seconds per second): each visitor's slow
  work is summed with exponential decay (time constant ``TAU_S``, as the
  frames' fair share, :mod:`server.inference.usage`); a visitor over its share
  has its next slow job held until the sum has decayed to it.  Three
  flooders then get their answers later, in turn, never the whole lane.

What remains is the cost of each hand-over while a slow job runs: a thread
waiting for the GIL asks its holder to drop it only after the switch
interval, 5 ms by default, and a frame takes several hand-overs (receive,
compute, encode, send).  Server processes therefore run with a switch
interval of :data:`GIL_SWITCH_INTERVAL_S` (set at start-up,
:mod:`server.lifespan`).  What the budgets achieve was measured only on a
loaded machine so far (docs/benchmarks.md, "Slow-lane floods").

Times are seconds of the caller's monotonic clock; costs are thread CPU seconds.
"""

import math

from .usage import PRUNE_EVERY, TAU_S, Decayed

# sys.setswitchinterval of a server process: how long a thread waiting for the GIL lets its holder run
# before asking for it (CPython's default: 5 ms).  Only threads that contend switch more often.
GIL_SWITCH_INTERVAL_S = 0.0005


class SlowBudget:
    """When the next slow job of a visitor, and of the lane, may start."""

    def __init__(self, visitor_share: float, lane_budget: float) -> None:
        self.visitor_share = visitor_share
        self.lane_budget = lane_budget
        self.used = Decayed()  # slow-lane CPU seconds per visitor, decayed over TAU_S
        self.lane_free_at = -math.inf  # the lane may start its next job from this time on
        self.charges = 0

    def visitor_wait_s(self, owner: int, now: float) -> float:
        """How long ``owner``'s next slow job must wait for its usage to decay to its share (0: none)."""
        rate = self.used.get(owner, now) / TAU_S
        return TAU_S * math.log(rate / self.visitor_share) if rate > self.visitor_share else 0.0

    def lane_wait_s(self, now: float) -> float:
        """How long the lane must stay idle before its next job (0: it may start one now)."""
        return max(0.0, self.lane_free_at - now)

    def charge(self, owner: int, cost_s: float, now: float) -> None:
        """A slow job of ``owner`` ended at ``now`` after ``cost_s`` CPU seconds: both budgets pay for it."""
        self.used.add(owner, cost_s, now)
        self.lane_free_at = max(self.lane_free_at, now) + cost_s * (1.0 / self.lane_budget - 1.0)
        self.charges += 1
        if self.charges % PRUNE_EVERY == 0:
            self.used.prune(now)  # visitors who left
