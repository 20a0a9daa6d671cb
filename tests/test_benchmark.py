"""The latency benchmark: its workload is protocol-valid, its figures are computed right, and a tiny run works.

The smoke test runs ``python -m benchmarks.latency`` for real (our server and
the floor server on loopback, 1 and 2 visitors, 1 s each) and checks that the
JSON carries every figure; no speed is asserted.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.latency import compare, largest_within, percentiles
from benchmarks.workload import Pace, resample, visitor_schedule
from model_store.strokes import load_golden_digits
from support import ROOT


def test_resample_spaces_points_evenly_and_keeps_the_ends() -> None:
    stroke = [(0.1, 0.1), (0.5, 0.1), (0.5, 0.4)]  # 0.7 canvas widths long
    points = resample(stroke, step=0.01)
    steps = np.hypot(*np.diff(np.asarray(points), axis=0).T)
    assert points[0] == (0.1, 0.1) and points[-1] == (0.5, 0.4)
    assert len(points) == 71
    assert steps.max() <= 0.01 + 1e-4
    assert resample([(0.3, 0.3)], step=0.01) == [(0.3, 0.3)]


def test_schedule_sends_one_stroke_message_per_animation_frame() -> None:
    drawings = list(load_golden_digits().values())[:3]
    pace = Pace()
    schedule = visitor_schedule(drawings, pace, seed=1)
    events = schedule.events
    times = [event.at_s for event in events]
    assert times == sorted(times) and times[-1] < schedule.period_s
    strokes = [event for event in events if event.message["type"] == "stroke"]
    assert all(1 <= len(event.message["points"]) <= pace.points_per_message for event in strokes)
    assert all(0.0 <= value <= 1.0 for event in strokes for point in event.message["points"] for value in point)
    # Within a stroke, consecutive messages are one animation frame apart.
    gaps = [b.at_s - a.at_s for a, b in zip(strokes, strokes[1:]) if not b.new_stroke]
    assert np.allclose(gaps, 1.0 / pace.frame_rate_hz)
    assert sum(event.new_stroke for event in strokes) == sum(len(drawing) for drawing in drawings)
    assert [event.message["type"] for event in events].count("clear") == len(drawings)


def test_percentiles_count_unanswered_messages_as_infinitely_late() -> None:
    values = np.arange(1, 101, dtype=np.float32)  # 1 … 100 ms
    assert percentiles(values, unanswered=0) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0}
    late = percentiles(values, unanswered=2)
    assert late["p50"] == 51.0 and late["p99"] is None and late["max"] is None


def _step(visitors: int, p99: float | None, frames_per_s: float) -> dict:
    return {"visitors": visitors, "frames_per_s": frames_per_s,
            "latency_ms": {"p50": 1.0, "p95": 2.0, "p99": p99, "max": p99}}


def test_largest_n_within_goal_stops_at_the_first_step_over_it() -> None:
    steps = [_step(1, 4.0, 60), _step(10, 20.0, 600), _step(50, 40.0, 2000), _step(100, 30.0, 2500)]
    assert largest_within(steps, 33.0) == 10
    assert largest_within([_step(1, None, 0)], 33.0) is None


def test_compare_reports_baselines_as_ratios_to_our_server() -> None:
    results = {"server": [_step(1, 4.0, 60), _step(10, 10.0, 600)],
               "reference": [_step(1, 8.0, 60), _step(10, 100.0, 50)]}
    comparison = compare(results)["reference"]
    assert comparison["per_visitors"]["10"] == {"p99_ratio_baseline_over_ours": 10.0,
                                                "frames_per_s_ratio_ours_over_baseline": 12.0}
    assert comparison["max_frames_per_s"] == 60
    assert comparison["max_frames_per_s_ratio_ours_over_baseline"] == 10.0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    plot = tmp_path_factory.mktemp("bench") / "latency.png"
    command = [sys.executable, "-m", "benchmarks.latency", "--visitors", "1,2", "--duration", "1",
               "--drain", "1", "--servers", "server,floor", "--processes", "1", "--digits", "3",
               "--json", "--quiet", "--plot", str(plot)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout), plot


def test_tiny_run_reports_every_figure(tiny_run: tuple[dict, Path]) -> None:
    report, _ = tiny_run
    assert set(report["results"]) == {"server", "floor"}
    for steps in report["results"].values():
        assert [step["visitors"] for step in steps] == [1, 2]
        for step in steps:
            assert step["connected"] == step["visitors"], step
            assert step["errors"] == {}, step
            assert step["input_messages"] > 0 and step["frames"] > 0
            latency = step["latency_ms"]
            assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
            assert 0.0 <= step["coalesced_fraction"] <= 1.0
            assert step["server_rss_mb"] > 0 and step["server_cpu_cores"] >= 0
            assert step["client_cpu_cores"] > 0
            for key in ("frames_per_s", "frames_per_s_per_visitor", "input_rate_per_visitor_hz",
                        "frame_latency_ms", "unanswered", "client_tick_lag_ms_p99"):
                assert key in step
    # Each frame's own compute_ms: the server's is real work, the floor's none.
    assert all(step["compute_ms"]["p50"] > 0 for step in report["results"]["server"])
    assert all(step["compute_ms"]["max"] == 0 for step in report["results"]["floor"])
    assert "floor" in report["comparison"]
    assert set(report["goals"]) == {"one_visitor_p99_ms", "visitors_within_p99_33ms", "frames_per_s_vs_reference"}
    assert report["machine"]["cores"] >= 1 and report["drawings"]["count"] == 3


def test_tiny_run_writes_a_png_plot(tiny_run: tuple[dict, Path]) -> None:
    _, plot = tiny_run
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_frame_cost_replays_every_message_as_a_frame_and_splits_the_profile() -> None:
    """``benchmarks.framecost`` on 3 visitors × 20 messages: one frame per message, positive costs, and a
    profile breakdown whose parts add up to 100 %."""
    run = subprocess.run([sys.executable, "-m", "benchmarks.framecost", "--visitors", "3", "--frames", "20",
                          "--repeats", "1", "--batch", "2", "--profile", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(run.stdout)
    cost = report["median"]
    assert cost["frames"] == 60
    assert 0 < cost["protocol_us"] < cost["total_us"] and 0 < cost["engine_thread_us"] < cost["total_us"]
    assert set(report["profile_percent"]) == {"raster", "encoding", "protocol", "engine", "rest"}
    assert sum(report["profile_percent"].values()) == pytest.approx(100, abs=0.5)
    assert report["profile_percent"]["raster"] > 0 and report["profile_percent"]["encoding"] > 0


def test_frame_cost_replays_an_older_commit_beside_this_code() -> None:
    """``--baseline REV`` extracts commit REV (here the parent of this checkout's HEAD, or HEAD itself in a
    shallow clone) and replays its own framecost in the same run: both costs and their ratio are reported."""
    parent = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD~1"], cwd=ROOT, capture_output=True,
                            text=True)
    revision = "HEAD~1" if parent.returncode == 0 else "HEAD"
    run = subprocess.run([sys.executable, "-m", "benchmarks.framecost", "--visitors", "2", "--frames", "10",
                          "--repeats", "1", "--batch", "2", "--json", "--baseline", revision],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    report = json.loads(run.stdout)
    baseline, ours = report["baseline"]["median"], report["median"]
    assert report["baseline"]["revision"] == revision
    assert baseline["frames"] == ours["frames"] == 20
    assert baseline["total_us"] > 0
    assert report["over_baseline"] == pytest.approx(ours["total_us"] / baseline["total_us"], rel=1e-2)


def test_frame_cost_names_a_revision_that_does_not_exist() -> None:
    run = subprocess.run([sys.executable, "-m", "benchmarks.framecost", "--visitors", "1", "--frames", "2",
                          "--repeats", "1", "--baseline", "no-such-revision"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert "cannot extract revision 'no-such-revision'" in run.stderr and "Traceback" not in run.stderr
