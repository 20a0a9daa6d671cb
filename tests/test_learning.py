"""A training round (python -m model_store learn), its rollback and the export, on a copy of the store and a
real SQLite teaching database."""

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_store import datasets
from model_store.manifest import model_record, store_dir_from_env
from model_store.store import load_model
from model_store.strokes import image_to_strokes
from server.teaching.consent import CONSENT_TEXT
from server.teaching.database import database_url, open_engine
from server.teaching.drawings import DrawingStore, Reading
from server.teaching.migrate import prepare
from server.teaching.schema import Status

ROOT = Path(__file__).resolve().parent.parent


def pen_digits(n: int, seed: int) -> list[tuple[Any, int]]:
    """``n`` embedded digits redrawn as pen strokes, with their labels."""
    images, labels = datasets.load_embedded()
    picked = np.random.default_rng(seed).permutation(len(labels))[:n]
    return [(tuple(tuple(map(tuple, s)) for s in image_to_strokes(images[i])), int(labels[i])) for i in picked]


def seed(data_dir: Path, drawings: list[tuple[Any, int]], status: Status, shift: int = 0) -> list[int]:
    """Store ``drawings`` labelled ``(label + shift) % 10`` with ``status``; their ids."""
    url = database_url("", data_dir)
    prepare(url)

    async def store_all() -> list[int]:
        engine = open_engine(url)
        try:
            store = DrawingStore(engine)
            ids = []
            for strokes, label in drawings:
                stored = await store.add(strokes, (label + shift) % 10, Reading("default", "seed", 0, (0.1,) * 10))
                if status != Status.PROPOSED:
                    await store.moderate(stored.id, status, None)
                ids.append(stored.id)
            return ids
        finally:
            await engine.dispose()
    return asyncio.run(store_all())


def store_copy(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(store_dir_from_env(), store)
    return store


def model_store(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "model_store", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(data_dir)})


def test_a_round_promotes_with_its_provenance_and_rolls_back(tmp_path: Path) -> None:
    store, data_dir = store_copy(tmp_path), tmp_path / "data"
    confirmed = seed(data_dir, pen_digits(120, seed=1), Status.CONFIRMED)
    proposed = seed(data_dir, pen_digits(20, seed=2), Status.PROPOSED)
    before = model_record("default", store)["sha256"]
    done = model_store("--store", str(store), "learn", "--json", "--epochs", "3", data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    data = result["data"]
    assert set(data["visitor_train_ids"]) | set(data["visitor_held_out_ids"]) == set(confirmed)  # no proposals
    assert not set(data["visitor_train_ids"]) & set(data["visitor_held_out_ids"])
    assert all(i % 5 == 0 for i in data["visitor_held_out_ids"]) and not set(proposed) & set(data["visitor_train_ids"])
    assert set(result["evaluations"]) == {"embedded_validation", "visitor_held_out"}
    assert result["evaluations"]["embedded_validation"]["n"] == 500
    for evaluation in result["evaluations"].values():
        assert len(evaluation["per_class_before"]) == 10 and len(evaluation["confusion_after"]) == 10
    assert result["promoted"] and result["blocked_by"] == [], result["evaluations"]
    entry = model_record("default", store)
    assert entry["sha256"] == result["version"]["sha256"] != before
    assert (entry["round"], entry["parent"]["sha256"]) == (1, before)
    assert entry["provenance"]["drawings"] == data["visitor_train_ids"]
    maps = entry["provenance"]["maps"]  # the LRP maps of the round's most changed drawings, old and new version
    assert len(maps) == 6 and {m["id"] for m in maps} <= set(data["visitor_train_ids"])
    for shown in maps:
        for side in ("old", "new"):
            values = np.array(shown[side]["heatmap"]["values"])
            assert values.shape == (784,) and np.abs(values).max() == 127
        assert shown["old"]["heatmap"] != shown["new"]["heatmap"]
    assert load_model("default", store) is not None  # the new file verifies against its recorded hash
    back = model_store("--store", str(store), "rollback", data_dir=data_dir)
    assert back.returncode == 0, back.stderr
    assert model_record("default", store)["sha256"] == before
    load_model("default", store)
    again = model_store("--store", str(store), "rollback", data_dir=data_dir)
    assert again.returncode == 2 and "no parent version" in again.stderr


def test_a_round_that_would_hurt_is_blocked_and_says_by_what(tmp_path: Path) -> None:
    """Hostile labels (every digit taught as the next one), accepted unreviewed: the round must not promote."""
    store, data_dir = store_copy(tmp_path), tmp_path / "data"
    seed(data_dir, pen_digits(400, seed=3), Status.PROPOSED, shift=1)
    files_before = sorted(p.name for p in (store / "weights").iterdir())
    manifest_before = (store / "manifest.json").read_bytes()
    done = model_store("--store", str(store), "learn", "--json", "--accept-proposed", "--epochs", "4",
                       data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert not result["promoted"] and result["version"] is None
    assert "embedded_validation" in result["blocked_by"], result["evaluations"]
    assert (store / "manifest.json").read_bytes() == manifest_before
    assert sorted(p.name for p in (store / "weights").iterdir()) == files_before


def test_export_writes_strokes_idx_rasters_and_a_datasheet(tmp_path: Path) -> None:
    data_dir, out = tmp_path / "data", tmp_path / "export"
    drawings = pen_digits(30, seed=4)
    seed(data_dir, drawings[:25], Status.CONFIRMED)
    seed(data_dir, drawings[25:], Status.REJECTED)
    done = model_store("export", str(out), data_dir=data_dir)
    assert done.returncode == 0, done.stderr
    strokes = json.loads((out / "strokes.json").read_text())
    assert len(strokes) == 25 and [d["label"] for d in strokes] == [label for _, label in drawings[:25]]
    images = datasets.read_idx(out / "images-idx3-ubyte.gz")
    labels = datasets.read_idx(out / "labels-idx1-ubyte.gz")
    assert images.shape == (25, 28, 28) and images.dtype == np.uint8 and images.max() > 200
    assert labels.tolist() == [label for _, label in drawings[:25]]
    sheet = (out / "DATASHEET.md").read_text()
    assert CONSENT_TEXT in sheet
    counts = np.bincount(labels, minlength=10)
    for digit in range(10):
        assert f"| {digit} | {counts[digit]} |" in sheet


def test_the_page_shows_the_consent_the_datasheet_quotes() -> None:
    script = (ROOT / "static" / "teach.js").read_text()
    found = re.search(r'export const CONSENT_TEXT = ((?:"[^"]*"\s*\+?\s*)+);', script)
    assert found is not None
    assert "".join(re.findall(r'"([^"]*)"', found.group(1))) == CONSENT_TEXT


@pytest.mark.parametrize("args", [("learn", "--json"), ("export", "x")])
def test_the_commands_use_the_servers_database_by_default(args: tuple[str, ...]) -> None:
    """With no --data-dir, DATA_DIR (else ./data) is the database: the same one `make run` writes."""
    from model_store.__main__ import parser
    from model_store.learn_cli import database_of

    parsed = parser().parse_args([*args])
    assert database_of(parsed).endswith("/teaching.sqlite3")
