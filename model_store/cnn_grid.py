"""Train the ``cnn`` candidates of ``cnn_candidates.json`` one after another and score them on validation.

``python -m model_store.cnn_grid --output FILE`` appends one JSON line per candidate: its configuration,
the validation accuracy of the 500 held-out embedded digits as stored and redrawn as pen strokes
through the server's rasteriser, their mean (the selection score) and the training seconds.  It
never reads the official test set: the winner is measured on it once, when it is registered
(``python -m model_store train --family cnn``).
"""

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import datasets
from .cnn_training import CnnTrainConfig, train_cnn
from .evaluate import evaluate, redraw
from .strokes import Stroke

CANDIDATES_PATH = Path(__file__).resolve().parent / "cnn_candidates.json"


def candidates(path: Path = CANDIDATES_PATH) -> list[CnnTrainConfig]:
    """The configurations listed in ``path``, in their order (the order breaks ties)."""
    return [CnnTrainConfig(**fields) for fields in json.loads(path.read_text(encoding="utf-8"))["candidates"]]


def score(config: CnnTrainConfig, redrawn_val: np.ndarray,
          rasterize: Callable[[Sequence[Stroke]], np.ndarray]) -> dict[str, Any]:
    """Train ``config`` on the embedded split; its validation figures as one JSON-ready record."""
    images, labels = datasets.load_embedded()
    train_set, (val_images, val_labels) = datasets.split_embedded(images, labels, n_val=500, seed=0)
    result = train_cnn(config, train_set, (val_images, val_labels), progress=False, rasterize=rasterize)
    pen = evaluate(result.model, redrawn_val, val_labels)["accuracy"]
    return {"config": config.__dict__, "val_accuracy": round(result.val_accuracy, 4),
            "val_pen_stroke_accuracy": round(pen, 4), "score": round((result.val_accuracy + pen) / 2, 4),
            "train_seconds": round(result.seconds, 1)}


def main() -> None:
    from server.raster import rasterize  # only this command needs the server's rasteriser

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="JSON-lines file the results are appended to")
    parser.add_argument("--only", type=int, nargs="*", help="indices of the candidates to run (default: all)")
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = datasets.load_embedded()
    _, (val_images, _) = datasets.split_embedded(images, labels, n_val=500, seed=0)
    redrawn_val = redraw(val_images, rasterize)
    for index, config in enumerate(candidates()):
        if arguments.only is not None and index not in arguments.only:
            continue
        record = {"index": index, **score(config, redrawn_val, rasterize)}
        with arguments.output.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
