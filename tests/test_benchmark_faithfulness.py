"""The faithfulness benchmark: a tiny real run gives every method's figures and a chosen preset."""

import json
import os
import subprocess
import sys

from benchmarks.faithfulness import CONFIGS, Row, chosen_preset
from support import ROOT


def test_a_tiny_run_reports_every_method_and_preset() -> None:
    environment = {key: value for key, value in os.environ.items() if key != "MNIST_DIR"}
    result = subprocess.run([sys.executable, "-m", "benchmarks.faithfulness", "--json", "--n", "2", "--models", "h16"],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=240, check=True)
    report = json.loads(result.stdout)
    assert report["digits"] == 2 and "held-out" in report["source"]
    rows = report["models"]["h16"]["rows"]
    assert {(row["method"], row["rule"] or "epsilon") for row in rows} == set(CONFIGS)
    for row in rows:
        assert -1.0 <= row["rho_fc2"] <= 1.0 and -1.0 <= row["rho_fc2_fc1"] <= 1.0
        assert abs(row["faithfulness"] - row["deletion"] - row["insertion"]) <= 0.002  # each rounded to 0.001
    assert set(report["models"]["h16"]["random"]) == {"deletion", "insertion", "faithfulness"}


def test_the_chosen_preset_passes_randomisation_and_is_most_faithful() -> None:
    rows = [Row("lrp", "epsilon", 0.4, 0.4, True, 5.0, 3.0, 8.0),
            Row("lrp", "zplus", 0.7, 0.4, False, 9.0, 9.0, 18.0),
            Row("lrp", "gamma", 0.3, 0.2, True, 6.0, 3.0, 9.0),
            Row("saliency", None, 0.0, 0.0, True, 20.0, 20.0, 40.0)]
    assert chosen_preset(rows) == "gamma"
    assert chosen_preset(rows[1:2]) is None
