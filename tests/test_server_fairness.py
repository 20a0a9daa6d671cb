"""Fair share (issue 14.2): visitors doing the worst the limits allow barely slow a drawing bystander."""

import pytest

from benchmarks.fairness import measure
from support import server_process, ws_url

# On this shared 2-core machine (load 15 from other jobs), a few of the bystander's frames come tens of
# ms late whatever the abusers do, and the three abusers' ~150 extra frames/s alone (as three ordinary
# visitors would send) cost the starved server time: the bound is twice the baseline plus this.  Before
# the fair share the same run measured p50 207 ms, p99 556 ms (23× the baseline) under the zig-zag abuse.
NOISE_MS = 50.0
# Not asserted: that the rescale abusers' own frame rate drops.  Under load it did (4–15 frames/s), but on
# an idle machine their redraws stay within the fair share and they keep ~50–60 frames/s (issue 14 stays
# open for this).


@pytest.mark.parametrize("mode", ["zigzag", "rescale"])
async def test_three_abusers_less_than_double_a_drawing_bystanders_p99(mode: str) -> None:
    with server_process() as server:  # apart from this process, whose event loop runs the four clients
        report = await measure(ws_url(server.url), server.url, abusers=3, mode=mode, rate=120.0, duration_s=3.0,
                               rounds=2)
    baseline, abused = report["baseline"], report["abused"]
    assert abused["p99_ms"] < 2 * baseline["p99_ms"] + NOISE_MS, report
    assert abused["bystander_fps"] > 0.7 * baseline["bystander_fps"], report
