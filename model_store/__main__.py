"""Command line of the model store: ``python -m model_store {list,eval,train,fetch-mnist,learn,rollback,export}``."""

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import datasets
from .cnn_training import CnnTrainConfig, train_cnn
from .evaluate import REDRAW_SEED, REDRAW_SIZES, evaluate, redraw, redrawn_test_sample
from .families import CNN, FAMILIES, MLP, family_of
from .fetch import DEFAULT_BASE_URL, FetchError, fetch_mnist
from .learn_cli import add_commands as add_learning_commands
from .manifest import ModelStoreError, read_manifest
from .references import compute_references, register_references
from .store import load_model, register_model
from .training import SELECTIONS, TrainConfig, train

Split = tuple[np.ndarray, np.ndarray]  # images, labels


def _mnist_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.mnist_dir) if args.mnist_dir else datasets.mnist_dir_from_env()


def cmd_list(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.store)
    models = [
        {"name": name, "family": family_of(entry), "hidden": entry["hidden"], "val_accuracy": entry.get("val_accuracy"),
         "test_accuracy": entry.get("test_accuracy"), "default": name == manifest.get("default")}
        for name, entry in sorted(manifest["models"].items())
    ]
    if args.json:
        print(json.dumps({"default": manifest.get("default"), "models": models}))
        return 0
    print(f"{'model':<12} {'family':<6} {'hidden':>6} {'val acc':>8} {'test acc':>9}")
    for m in models:
        test = f"{m['test_accuracy']:.4f}" if m["test_accuracy"] is not None else "-"
        val = f"{m['val_accuracy']:.4f}" if m["val_accuracy"] is not None else "-"
        print(f"{m['name'] + (' *' if m['default'] else ''):<12} {m['family']:<6} {m['hidden']:>6} {val:>8} {test:>9}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    directory = _mnist_dir(args)
    if directory is None:
        raise SystemExit("eval needs the official MNIST test files: pass --mnist-dir DIR or set MNIST_DIR")
    model = load_model(args.name, args.store)
    images, labels = datasets.load_idx(directory, "test")
    result = {"model": args.name, **evaluate(model, images, labels)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.name}: {result['accuracy']:.4f} on {result['n']} official test digits")
    print("confusion (rows: true 0-9, columns: predicted 0-9)")
    for digit, row in enumerate(result["confusion"]):
        print(f"{digit}: " + " ".join(f"{count:5d}" for count in row))
    return 0


def _training_data(args: argparse.Namespace) -> tuple[Split, Split, dict[str, Any]]:
    if args.data == "embedded":
        images, labels = datasets.load_embedded()
        source = {"name": datasets.EMBEDDED_NAME, "n": int(len(labels))}
    else:
        directory = _mnist_dir(args)
        if directory is None:
            raise SystemExit("--data mnist-train needs --mnist-dir DIR or MNIST_DIR")
        images, labels = datasets.load_idx(directory, "train")
        source = {"name": "mnist-train", "n": int(len(labels))}
    train_set, val_set = datasets.split_embedded(images, labels, n_val=args.val_size, seed=0)
    source.update(train=int(len(train_set[1])), validation=int(len(val_set[1])), split_seed=0)
    return train_set, val_set, source


def cmd_train(args: argparse.Namespace) -> int:
    if args.family == CNN:
        return cmd_train_cnn(args)
    config = TrainConfig(
        hidden=args.hidden, epochs=args.epochs, seed=args.seed, augment=args.augment, lr=args.lr or 1e-3,
        batch_size=args.batch_size or 128, teacher_hidden=args.teacher_hidden, teacher_epochs=args.teacher_epochs,
        teacher_augment=args.teacher_augment, distill_weight=args.distill_weight,
        distill_temperature=args.distill_temperature, teachers=args.teachers, select=args.select,
    )
    train_set, val_set, source = _training_data(args)
    result = train(config, train_set, val_set, progress=not args.quiet)
    details = {
        "training_data": source,
        "config": asdict(config),
        "val_accuracy": round(result.val_accuracy, 4),
        "best_epoch": result.best_epoch,
        "train_seconds": round(result.seconds, 1),
        "command": "python -m model_store " + shlex.join(sys.argv[1:]),
        # set exactly when config.teacher_hidden is: train() measures the teachers it distils from
        "distilled_from": None if result.teacher_val_accuracy is None else {
            "hidden": config.teacher_hidden, "epochs": config.teacher_epochs, "teachers": config.teachers,
            "augment": config.teacher_augment or config.augment,
            "val_accuracy": round(result.teacher_val_accuracy, 4),
            "note": "teachers trained by the same command on the same data, then discarded",
        },
    }
    directory = _mnist_dir(args)
    if directory is not None and "test" in datasets.available_splits(directory):
        details["test_accuracy"] = round(evaluate(result.model, *datasets.load_idx(directory, "test"))["accuracy"], 4)
    entry = register_model(result.model, args.name, details, args.store, make_default=args.default)
    print(json.dumps({"name": args.name, "val_accuracy": entry["val_accuracy"],
                      "test_accuracy": entry.get("test_accuracy")}))
    return 0


def cmd_train_cnn(args: argparse.Namespace) -> int:
    """Train a ``cnn`` (:mod:`model_store.cnn_training`), measure it, register it with its reference samples."""
    if args.data != "embedded":
        raise ValueError("--family cnn trains on the embedded digits only (its reference samples index them)")
    if args.teacher_hidden is not None:
        raise ValueError("--family cnn is not distilled: drop --teacher-hidden")
    from server.raster import rasterize  # the live pipeline's rasteriser, for the pen-stroke accuracy

    defaults = CnnTrainConfig()
    config = CnnTrainConfig(hidden=args.hidden, epochs=args.epochs, seed=args.seed, augment=args.augment,
                            lr=args.lr or defaults.lr, batch_size=args.batch_size or defaults.batch_size,
                            redrawn=args.redrawn)
    images, labels = datasets.load_embedded()
    train_idx, val_idx = datasets.split_indices(labels, args.val_size, seed=0)
    train_set, val_set = (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])
    result = train_cnn(config, train_set, val_set, progress=not args.quiet, rasterize=rasterize)
    val_pen = evaluate(result.model, redraw(val_set[0], rasterize), val_set[1])["accuracy"]
    details: dict[str, Any] = {
        "training_data": {"name": datasets.EMBEDDED_NAME, "n": int(len(labels)), "train": int(len(train_idx)),
                          "validation": int(len(val_idx)), "split_seed": 0},
        "config": {**asdict(config), "select": "last"},
        "val_accuracy": round(result.val_accuracy, 4),
        "val_pen_stroke_accuracy": round(val_pen, 4),
        "train_seconds": round(result.seconds, 1),
        "command": "python -m model_store " + shlex.join(sys.argv[1:]),
        "pen_stroke_protocol": f"1,000 official test digits, chosen and drawn under seed {REDRAW_SEED} "
                               "(model_store.evaluate.redrawn_test_sample, the sample tests/test_raster.py draws): "
                               "each skeletonised into strokes (model_store.strokes), drawn at a random size of "
                               f"{REDRAW_SIZES[0]}-{REDRAW_SIZES[1]} of the canvas at a random position and "
                               "rasterised by server.raster; validation: the 500 held-out digits redrawn the same "
                               f"way (model_store.evaluate.redraw, seed {REDRAW_SEED})",
    }
    directory = _mnist_dir(args)
    if directory is not None and "test" in datasets.available_splits(directory):
        test_images, test_labels = datasets.load_idx(directory, "test")
        details["test_accuracy"] = round(evaluate(result.model, test_images, test_labels)["accuracy"], 4)
        pen_images, pen_labels = redrawn_test_sample(test_images, test_labels, rasterize)
        details["pen_stroke_accuracy"] = round(evaluate(result.model, pen_images, pen_labels)["accuracy"], 4)
        details["pen_stroke_n"] = int(len(pen_labels))
    entry = register_model(result.model, args.name, details, args.store, make_default=args.default, family=CNN)
    references = compute_references(result.model, *train_set, train_idx)
    register_references(args.name, references, {"samples": {"name": datasets.EMBEDDED_NAME, "split": "train",
                                                             "n": int(len(train_idx)), "split_seed": 0}}, args.store)
    print(json.dumps({"name": args.name, **{key: entry.get(key) for key in (
        "val_accuracy", "val_pen_stroke_accuracy", "test_accuracy", "pen_stroke_accuracy", "train_seconds")}}))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    for path in fetch_mnist(Path(args.directory), args.base_url, args.timeout):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m model_store", description=__doc__)
    root.add_argument("--store", type=Path, default=None,
                      help="store directory (default: MODEL_STORE_DIR or the shipped store)")
    sub = root.add_subparsers(dest="command", required=True)

    listing = sub.add_parser("list", help="the models with their accuracy")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(run=cmd_list)

    ev = sub.add_parser("eval", help="accuracy and confusion matrix on the official test set")
    ev.add_argument("name")
    ev.add_argument("--mnist-dir", help="directory of the official IDX files (default: MNIST_DIR)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.set_defaults(run=cmd_eval)

    tr = sub.add_parser("train", help="train a model and register it in the store")
    tr.add_argument("--name", required=True)
    tr.add_argument("--family", choices=FAMILIES, default=MLP,
                    help="mlp (784-H-10) or cnn (a LeNet with H units in fc1; the options below marked 'mlp' "
                         "do not apply to it; registered with its reference samples)")
    tr.add_argument("--hidden", type=int, default=128)
    tr.add_argument("--epochs", type=int, default=1000)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--augment", default="elastic", help="none, mild, affine or elastic")
    tr.add_argument("--lr", type=float, default=None, help="peak learning rate (default: mlp 1e-3, cnn 3e-3)")
    tr.add_argument("--batch-size", type=int, default=None, help="default: mlp 128, cnn 64")
    tr.add_argument("--redrawn", action="store_true",
                    help="cnn: also train on every training digit redrawn as pen strokes by the server's rasteriser")
    tr.add_argument("--teacher-hidden", type=int, default=None, help="mlp: distil from a teacher of this width")
    tr.add_argument("--teacher-epochs", type=int, default=600, help="mlp: the teachers' epochs")
    tr.add_argument("--teachers", type=int, default=1, help="mlp: distil from the mean of this many teachers")
    tr.add_argument("--teacher-augment", default=None, help="mlp: teacher's augmentation (default: the student's)")
    tr.add_argument("--distill-weight", type=float, default=0.7, help="mlp: weight of the teacher's soft targets")
    tr.add_argument("--distill-temperature", type=float, default=4.0, help="mlp: softmax temperature of distillation")
    tr.add_argument("--select", choices=SELECTIONS, default="best",
                    help="mlp: keep the weights of the best smoothed validation accuracy, or of the last epoch "
                         "(a cnn keeps the last)")
    tr.add_argument("--data", choices=["embedded", "mnist-train"], default="embedded")
    tr.add_argument("--val-size", type=int, default=500, help="held-out digits for model selection")
    tr.add_argument("--mnist-dir", help="official IDX files; the test split is only measured, never used")
    tr.add_argument("--default", action="store_true", help="make this the default model")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(run=cmd_train)

    fetch = sub.add_parser("fetch-mnist", help="download and verify the official MNIST files")
    fetch.add_argument("directory")
    fetch.add_argument("--base-url", default=DEFAULT_BASE_URL)
    fetch.add_argument("--timeout", type=float, default=60.0, help="seconds per network operation")
    fetch.set_defaults(run=cmd_fetch)
    add_learning_commands(sub)  # learn, rollback, export (model_store/learn_cli.py)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        run: Callable[[argparse.Namespace], int] = args.run  # one of the cmd_* functions
        return run(args)
    except (ModelStoreError, FetchError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
