"""The cnn benchmark: a tiny real run reports the backend, zennit, the cnn frame and the MLP frame at both batch
sizes, with the ratios computed from them; no speed is asserted (a shared host decides those)."""

import json
import subprocess
import sys

import pytest

from benchmarks.cnn import median_ms
from support import ROOT


def test_a_tiny_run_reports_every_row_and_ratio() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks.cnn", "--repeats", "1", "--json",
                             "--rule", "epsilon_gamma_box"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            check=True)
    report = json.loads(result.stdout)
    assert set(report) == {"B=1", "B=16"}
    for figures in report.values():
        per_frame = {name: figures[f"{name}_ms_per_frame"] for name in ("backend", "zennit", "cnn", "mlp")}
        assert all(value > 0 for value in per_frame.values())
        assert figures["zennit_over_backend"] == pytest.approx(per_frame["zennit"] / per_frame["backend"], rel=0.02)
        assert figures["cnn_over_mlp"] == pytest.approx(per_frame["cnn"] / per_frame["mlp"], rel=0.02)


def test_the_calls_take_turns_and_skip_the_warm_up() -> None:
    order: list[str] = []
    times = median_ms({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3)
    assert order == ["a", "b"] * 5 and set(times) == {"a", "b"}
