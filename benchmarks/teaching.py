"""Does teaching help?  Official test digits drawn as pen strokes are taught through the WebSocket as visitors
would, a training round runs on them, and both versions read held-out pen-stroke digits and the rest of the
official test set.

``python -m benchmarks.teaching [--teach 1250] [--held-out 1000] [--visitors 10] [--json]`` (needs MNIST_DIR).

The split of the official test set (10,000 digits, in file order), disjoint by construction:

* indices ``[0, teach)``: drawn as strokes (``model_store.strokes.image_to_strokes``) and taught with
  ``"consent": true``; the round (``--accept-proposed``) trains on those whose row id is not a multiple of 5
  (``model_store.learning.HELD_OUT_EVERY``: 1,000 of the default 1,250) and holds out the others;
* indices ``[5000, 5000 + held_out)``: drawn as strokes and only read, before and after (the goal's
  "held-out pen-stroke digits"), through the live pipeline's rasteriser (``server.raster``);
* every index not taught (8,750 by default): the official test set as scanned, before and after.

The model store is a temporary copy of the shipped one; nothing shipped changes.
"""

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import torch
from websockets.asyncio.client import connect

from benchmarks.targets import KINDS, LocalServer
from model_store import datasets
from model_store.learning import compare
from model_store.manifest import store_dir_from_env
from model_store.store import load_model
from model_store.strokes import image_to_strokes
from server.raster import rasterize

HELD_OUT_START = 5000
POINTS_PER_MESSAGE = 512


def pen_strokes(images: np.ndarray) -> list[list[list[tuple[float, float]]]]:
    return [image_to_strokes(image) for image in images]


async def teach_all(url: str, origin: str, drawings: list[tuple[list[list[tuple[float, float]]], int]],
                    visitors: int) -> list[int]:
    """Teach every ``(strokes, label)`` through ``visitors`` WebSocket connections; the acknowledged row ids."""
    queue: asyncio.Queue[tuple[list[list[tuple[float, float]]], int]] = asyncio.Queue()
    for drawing in drawings:
        queue.put_nowait(drawing)
    acknowledged: list[int] = []

    async def visitor() -> None:
        async with connect(url, origin=origin, compression=None, max_size=None) as socket:  # type: ignore[arg-type]
            seq, stroke_id = 0, -1  # stroke ids keep increasing across clears (docs/protocol.md, "stroke")

            async def send(kind: str, **fields: Any) -> None:
                nonlocal seq
                seq += 1
                await socket.send(orjson.dumps({"type": kind, "seq": seq, **fields}).decode())

            while not queue.empty():
                strokes, label = queue.get_nowait()
                await send("clear")
                for stroke in strokes:
                    stroke_id += 1
                    for start in range(0, len(stroke), POINTS_PER_MESSAGE):
                        points = [list(point) for point in stroke[start:start + POINTS_PER_MESSAGE]]
                        await send("stroke", id=stroke_id, points=points)
                await send("teach", label=label, consent=True)
                while True:
                    message = orjson.loads(await socket.recv())
                    if message["type"] == "frame" and message.get("frame"):
                        await socket.send(orjson.dumps({"type": "ack", "frame": message["frame"]}).decode())
                    elif message["type"] == "taught":
                        acknowledged.append(message["id"])
                        break
                    elif message["type"] == "error":
                        raise RuntimeError(f"teach refused: {message['code']}: {message['message']}")

    await asyncio.gather(*(visitor() for _ in range(visitors)))
    return acknowledged


def raster_images(strokes: list[list[list[tuple[float, float]]]]) -> np.ndarray:
    """``(N, 28, 28)`` float32: each drawing as the live pipeline rasterises it."""
    return np.stack([rasterize(s).reshape(28, 28) for s in strokes]).astype(np.float32)


def run(args: argparse.Namespace) -> dict[str, Any]:
    mnist = Path(args.mnist_dir or os.environ.get("MNIST_DIR", ""))
    images, labels = datasets.load_idx(mnist, "test")
    teach_idx = np.arange(args.teach)
    held_idx = np.arange(HELD_OUT_START, HELD_OUT_START + args.held_out)
    if args.teach > HELD_OUT_START:
        raise SystemExit(f"--teach must be at most {HELD_OUT_START} (the held-out digits start there)")
    rest = np.setdiff1d(np.arange(len(labels)), teach_idx)
    taught_strokes = pen_strokes(images[teach_idx])
    held_strokes = pen_strokes(images[held_idx])
    with tempfile.TemporaryDirectory(prefix="xai-teaching-bench-") as work:
        store, data = Path(work, "store"), Path(work, "data")
        shutil.copytree(store_dir_from_env(), store)
        environment = {"DATA_DIR": str(data), "MODEL_STORE_DIR": str(store), "PROCESSES": "1",
                       "MAX_TEACH_PER_MINUTE": "100000", "MAX_MESSAGES_PER_S": "100000"}
        drawings = [(s, int(labels[i])) for s, i in zip(taught_strokes, teach_idx) if s]
        with LocalServer(KINDS["single"], None, environment) as server:
            acknowledged = asyncio.run(teach_all(server.url, server.origin, drawings, args.visitors))
        round_ = subprocess.run([sys.executable, "-m", "model_store", "--store", str(store), "learn", "--json",
                                 "--accept-proposed", "--data-dir", str(data), "--mnist-dir", str(mnist)],
                                capture_output=True, text=True, check=True, env={**os.environ, **environment})
        result = json.loads(round_.stdout)
        old, new = load_model("default"), load_model("default", store)
    pen = compare(old, new, raster_images(held_strokes), labels[held_idx])
    official = compare(old, new, images[rest], labels[rest])
    return {
        "taught": len(drawings), "acknowledged": len(acknowledged),
        "trained_on": result["data"]["visitor_train"], "round_held_out": result["data"]["visitor_held_out"],
        "promoted": result["promoted"], "blocked_by": result["blocked_by"],
        "round_evaluations": {name: strip(e) for name, e in result["evaluations"].items()},
        "held_out_pen_strokes": strip(pen), "official_test_untaught": strip(official),
        "goal": {"pen_gain_points": round(100 * pen["change"], 2), "pen_gain_at_least_1_point": pen["change"] >= 0.01,
                 "official_no_drop_beyond_noise": not official["blocked"]},
    }


def strip(evaluation: dict[str, Any]) -> dict[str, Any]:
    """An evaluation without its per-class lists and confusion matrices."""
    return {k: v for k, v in evaluation.items() if not k.startswith(("confusion", "per_class"))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.teaching", description=__doc__.splitlines()[0])
    parser.add_argument("--teach", type=int, default=1250, help="official test digits taught (from index 0)")
    parser.add_argument("--held-out", type=int, default=1000, help="pen-stroke digits only read (from 5000)")
    parser.add_argument("--visitors", type=int, default=10, help="WebSocket connections teaching at once")
    parser.add_argument("--mnist-dir", help="official IDX files (default: MNIST_DIR)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = run(args)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
