"""The faithfulness benchmark: a tiny real run reports every method from the card's own checks, and chooses a preset."""

import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.faithfulness import CNN_CONFIGS, CONFIGS, interval
from support import ROOT


def test_a_tiny_run_reports_every_method_on_both_sources_and_a_choice() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "MNIST_DIR"}
    result = subprocess.run([sys.executable, "-m", "benchmarks.faithfulness", "--json", "--n", "2", "--models", "h16"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=400, check=True)
    report = json.loads(result.stdout)
    model = report["models"]["h16"]
    for source in ("official", "pen strokes"):
        assert "held-out" in model[source]["source"]
        rows = {(row["method"], row["rule"] or "epsilon"): row for row in model[source]["rows"]}
        assert set(rows) == set(CONFIGS)
        for (method, _), row in rows.items():
            assert 0.0 <= row["passes_card"] <= min(row["passes_deletion"], row["passes_randomization"]) <= 1.0
            assert abs(row["faithfulness"] - row["deletion"] - row["insertion"]) <= 0.002  # each rounded to 0.001
            assert row["control"] == (method in ("ink", "edges"))
        # The controls never pass: the same map whatever the weights.
        assert rows[("ink", "epsilon")]["passes_card"] == rows[("edges", "epsilon")]["passes_card"] == 0.0
        assert rows[("ink", "epsilon")]["rho_fc2_fc1"] == 1.0
    choice = model["choice"]
    assert choice["chosen"] in {rule for method, rule in CONFIGS if method == "lrp"}
    assert set(choice["difference_to_epsilon_ci"]) == {"zplus", "alpha2beta1", "zbox", "gamma"}


def test_the_cnn_gets_its_own_rows_and_no_preset_choice() -> None:
    """Its presets are zennit's composites, Grad-CAM is among its methods, its cascade ends with every layer."""
    environment = {key: value for key, value in os.environ.items() if key != "MNIST_DIR"}
    methods = ["lrp", "gradcam", "ink"]
    result = subprocess.run([sys.executable, "-m", "benchmarks.faithfulness", "--json", "--n", "1", "--models", "cnn",
                             "--methods", *methods], cwd=ROOT, env=environment, capture_output=True, text=True,
                            timeout=400, check=True)
    model = json.loads(result.stdout)["models"]["cnn"]
    assert model["family"] == "cnn" and model["choice"] is None and model["randomizations"] == ["fc2", "all"]
    expected = {(method, rule) for method, rule in CNN_CONFIGS if method in methods}
    assert {("lrp", "epsilon_plus_flat"), ("gradcam", "epsilon_plus_flat")} <= expected
    for source in ("official", "pen strokes"):
        rows = model[source]["rows"]
        assert {(row["method"], row["rule"] or "epsilon_plus_flat") for row in rows} == expected
        ink = next(row for row in rows if row["method"] == "ink")
        assert ink["passes_card"] == 0.0 and ink["rho_fc2_fc1"] == 1.0  # the control: the same map whatever the weights
        for row in rows:
            assert abs(row["faithfulness"] - row["deletion"] - row["insertion"]) <= 0.002


def test_the_bootstrap_interval_holds_the_mean_and_shrinks_with_more_digits() -> None:
    rng = np.random.default_rng(0)
    small, large = rng.normal(1.0, 1.0, 50), rng.normal(1.0, 1.0, 5000)
    for values in (small, large):
        low, high = interval(values)
        assert low < values.mean() < high
    assert interval(large)[1] - interval(large)[0] < (interval(small)[1] - interval(small)[0]) / 5
