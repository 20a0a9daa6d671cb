"""``python -m model_store learn | rollback | export``: a training round on visitors' drawings, its undo, and
the confirmed drawings as a dataset.  The drawings come from the teaching database the server uses
(``DATABASE_URL``, else SQLite in ``DATA_DIR``: with no options, the one ``make run`` writes)."""

import argparse
import asyncio
import copy
import gzip
import json
import struct
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from . import datasets
from .learning import (
    HELD_OUT_EVERY,
    NOISE_Z,
    LabelledDrawing,
    RoundConfig,
    blocked_by,
    compare,
    fine_tune,
    split_visitors,
    stack,
)
from .manifest import model_record
from .store import load_model
from .versions import promote, rollback


def database_of(args: argparse.Namespace) -> str:
    """The database URL: ``--database-url``, else the server's settings (``DATABASE_URL``, ``DATA_DIR``)."""
    from server.settings import Settings
    from server.teaching.database import database_url

    settings = Settings.from_env()
    data_dir = Path(args.data_dir) if args.data_dir else settings.data_dir
    return database_url(args.database_url or settings.database_url, data_dir, settings.database_url_file)


async def _drawings(url: str, accept_proposed: bool) -> list[Any]:
    from server.teaching.database import open_engine
    from server.teaching.drawings import DrawingStore
    from server.teaching.schema import Status

    statuses = [Status.CONFIRMED, Status.CORRECTED] + ([Status.PROPOSED] if accept_proposed else [])
    engine = open_engine(url)
    try:
        return await DrawingStore(engine).with_status(statuses, 1_000_000)
    finally:
        await engine.dispose()


def load_drawings(url: str, accept_proposed: bool) -> list[Any]:
    """Confirmed and corrected drawings (and proposed ones with ``accept_proposed``), oldest first."""
    from server.teaching.migrate import prepare

    prepare(url)  # an embedded SQLite file is created or upgraded; any other must be current
    return asyncio.run(_drawings(url, accept_proposed))


def labelled(rows: list[Any]) -> list[LabelledDrawing]:
    """Each row rasterised as the live pipeline does (server.raster)."""
    from server.raster import rasterize

    return [LabelledDrawing(row.id, rasterize(row.strokes).reshape(28, 28).astype(np.float32), row.final_label)
            for row in rows]


MAPS_PER_ROUND = 6  # round drawings whose LRP maps (old and new version) the provenance keeps


def quantised(heatmap: np.ndarray) -> dict[str, Any]:
    """A ``(28, 28)`` map as 784 int8 values and the scale that restores it (``value · scale``)."""
    scale = float(np.abs(heatmap).max()) / 127 or 1.0
    return {"scale": round(scale, 8), "values": np.round(heatmap / scale).astype(int).ravel().tolist()}


def round_maps(old: Any, new: Any, drawings: list[LabelledDrawing]) -> list[dict[str, Any]]:
    """LRP maps of the visitor's label under the old and the new version (the serving rule preset), for the
    ``MAPS_PER_ROUND`` training drawings whose probability of their label changed most."""
    import torch

    from server.explain.engine import Engine, Request, Selection

    if not drawings:
        return []
    images, labels = stack(drawings)
    with torch.no_grad():
        before = torch.softmax(old(torch.from_numpy(images)), 1).numpy()[np.arange(len(labels)), labels]
        after = torch.softmax(new(torch.from_numpy(images)), 1).numpy()[np.arange(len(labels)), labels]
    chosen = np.argsort(-np.abs(after - before), kind="stable")[:MAPS_PER_ROUND]
    engines = [Engine(model, randomized=False) for model in (old, new)]
    maps = []
    for i in chosen:
        request = Request(images[i], Selection(int(labels[i]), None), method="lrp", rule=None)
        frames = [engine.explain([request])[0] for engine in engines]
        maps.append({"id": drawings[i].id, "label": int(labels[i]),
                     **{side: {"prediction": int(frame.prediction), "p_label": round(float(p), 4),
                               "heatmap": quantised(frame.heatmap)}
                        for side, frame, p in (("old", frames[0], before[i]), ("new", frames[1], after[i]))}})
    return maps


def cmd_learn(args: argparse.Namespace) -> int:
    started = time.monotonic()
    url = database_of(args)
    rows = load_drawings(url, args.accept_proposed)
    train_v, held_v = split_visitors(labelled(rows))
    embedded_train, embedded_val = datasets.split_embedded(*datasets.load_embedded(), n_val=500, seed=0)
    old = load_model(args.name, args.store)
    parent_sha256 = model_record(args.name, args.store)["sha256"]  # the serving version this round starts from
    config = RoundConfig(epochs=args.epochs, seed=args.seed)
    new = fine_tune(copy.deepcopy(old), embedded_train, stack(train_v), config)
    sets = {"embedded_validation": embedded_val}
    if held_v:
        sets["visitor_held_out"] = stack(held_v)
    mnist = args.mnist_dir or datasets.mnist_dir_from_env()
    if mnist is not None and "test" in datasets.available_splits(Path(mnist)):
        sets["official_test"] = datasets.load_idx(Path(mnist), "test")
    evaluations = {name: compare(old, new, *data) for name, data in sets.items()}
    blocked = blocked_by(evaluations)
    data = {"embedded_train": int(len(embedded_train[1])), "visitor_train": len(train_v),
            "visitor_held_out": len(held_v), "visitor_train_ids": [d.id for d in train_v],
            "visitor_held_out_ids": [d.id for d in held_v],
            "visitor_train_per_class": [int(sum(d.label == c for d in train_v)) for c in range(10)],
            "accept_proposed": args.accept_proposed, "held_out_rule": f"id % {HELD_OUT_EVERY} == 0",
            "config": asdict(config)}
    version = None
    if not blocked and not args.dry_run:
        entry = promote(new, args.name, {
            "val_accuracy": evaluations["embedded_validation"]["after"],
            "test_accuracy": evaluations["official_test"]["after"] if "official_test" in evaluations else None,
            "provenance": {"drawings": data["visitor_train_ids"], "held_out": data["visitor_held_out_ids"],
                           "accept_proposed": args.accept_proposed,
                           "evaluations": evaluations, "maps": round_maps(old, new, train_v),
                           "command": "python -m model_store learn"}}, args.store)
        version = {"sha256": entry["sha256"], "file": entry["file"], "round": entry["round"],
                   "parent_sha256": entry["parent"]["sha256"]}
    result = {"model": args.name, "promoted": version is not None, "blocked_by": blocked, "version": version,
              "parent_sha256": parent_sha256, "noise_z": NOISE_Z, "data": data, "evaluations": evaluations,
              "seconds": round(time.monotonic() - started, 1)}
    if args.json:
        print(json.dumps(result))
    else:
        print_round(result)
    return 0


def print_round(result: dict[str, Any]) -> None:
    data = result["data"]
    print(f"model {result['model']}: fine-tuned on {data['embedded_train']} embedded digits + "
          f"{data['visitor_train']} visitor drawings ({data['visitor_held_out']} held out)")
    for name, e in result["evaluations"].items():
        flag = "  BLOCKS" if e["blocked"] else ""
        print(f"  {name:<20} n={e['n']:>5}  {e['before']:.4f} -> {e['after']:.4f}  "
              f"(change {e['change']:+.4f}, noise ±{e['noise']:.4f}){flag}")
    if result["promoted"]:
        print(f"promoted: round {result['version']['round']}, sha256 {result['version']['sha256'][:12]}")
    else:
        print(f"not promoted: blocked by {', '.join(result['blocked_by']) or 'nothing (--dry-run)'}")


def cmd_rollback(args: argparse.Namespace) -> int:
    entry = rollback(args.name, args.store)
    print(json.dumps({"model": args.name, "sha256": entry["sha256"], "round": entry.get("round", 0)}))
    return 0


def write_idx(path: Path, array: np.ndarray) -> None:
    """MNIST's idx format (LeCun et al.): magic (0, 0, 0x08 unsigned byte, ndim), big-endian sizes, data; gzipped."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def cmd_export(args: argparse.Namespace) -> int:
    from server.teaching.consent import CONSENT_TEXT

    rows = load_drawings(database_of(args), accept_proposed=False)
    out = Path(args.directory)
    out.mkdir(parents=True, exist_ok=True)
    drawings = labelled(rows)
    images, labels = stack(drawings)
    (out / "strokes.json").write_text(json.dumps([
        {"id": row.id, "label": row.final_label, "visitor_label": row.label, "status": row.status,
         "strokes": row.strokes, "model": row.model, "model_version": row.model_version,
         "prediction": row.prediction} for row in rows]) + "\n")
    write_idx(out / "images-idx3-ubyte.gz", np.round(images * 255))
    write_idx(out / "labels-idx1-ubyte.gz", labels)
    counts = Counter(int(label) for label in labels)
    table = "\n".join(f"| {digit} | {counts.get(digit, 0)} |" for digit in range(10))
    (out / "DATASHEET.md").write_text(f"""# Visitors' digits: datasheet

- **What**: {len(rows)} handwritten digits drawn with a finger, pen or mouse on the xai-live exhibit's pad,
  each labelled by its visitor and confirmed (or corrected) by a curator on `/learn`; rejected and
  unreviewed drawings are left out.
- **Files**: `strokes.json` (per drawing: id, final label, the visitor's label, strokes as lists of
  `[x, y]` canvas fractions in [0, 1], origin top left; the model and version that read it when taught,
  and its reading); `images-idx3-ubyte.gz`, `labels-idx1-ubyte.gz` (MNIST's idx format, 28 × 28 bytes
  0–255 ink bright, rasterised by the exhibit's own pipeline `server.raster`, MNIST-centred).
- **Where from**: visitors of the exhibit who chose to teach the network; nothing about them is stored.
- **Consent**: each visitor ticked, for each drawing, a box beside this text:
  "{CONSENT_TEXT}"
- **Held out**: drawings whose id is a multiple of {HELD_OUT_EVERY} never train a model here
  (`python -m model_store learn` evaluates on them).

| digit | drawings |
|---|---|
{table}
""")
    per_class = [counts.get(digit, 0) for digit in range(10)]
    print(json.dumps({"directory": str(out), "drawings": len(rows), "per_class": per_class}))
    return 0


def add_commands(sub: Any) -> None:
    """Register ``learn``, ``rollback`` and ``export`` on the store's subcommand parser."""
    def database_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--database-url", help="SQLAlchemy async URL (default: the server's DATABASE_URL)")
        parser.add_argument("--data-dir", help="directory of the embedded SQLite file (default: DATA_DIR or data)")

    learn = sub.add_parser("learn", help="fine-tune a model on confirmed visitor drawings; promote if no set drops")
    learn.add_argument("--name", default="default", help="the model to fine-tune (default: default)")
    learn.add_argument("--accept-proposed", action="store_true",
                       help="treat every visitor's proposal as confirmed (trusted source, benchmarks)")
    learn.add_argument("--epochs", type=int, default=RoundConfig.epochs)
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--mnist-dir", help="official IDX files for the official_test set (default: MNIST_DIR)")
    learn.add_argument("--dry-run", action="store_true", help="evaluate only; never promote")
    learn.add_argument("--json", action="store_true", help="print one JSON object")
    database_options(learn)
    learn.set_defaults(run=cmd_learn)

    back = sub.add_parser("rollback", help="make a model's parent version current again")
    back.add_argument("--name", default="default")
    back.set_defaults(run=cmd_rollback)

    export = sub.add_parser("export", help="confirmed drawings as strokes JSON, idx rasters and a datasheet")
    export.add_argument("directory")
    database_options(export)
    export.set_defaults(run=cmd_export)

