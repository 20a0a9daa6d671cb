"""Faithfulness benchmark: model randomisation and deletion / insertion AOPC of every method and preset.

``python -m benchmarks.faithfulness [--json] [--n N] [--models default h16]``
explains the predicted class of N digits with every LRP preset and every
captum method, for each shipped model, and reports per method:

- ``rho_fc2``, ``rho_fc2_fc1``: the mean Spearman ρ (absolute values, ink
  pixels; :func:`server.explain.faithfulness.rank_correlation`) between the
  map and the same map from the copy with ``fc2``, then ``fc2`` and ``fc1``,
  re-initialised (:mod:`server.explain.sanity`); a map passes the
  randomisation test when both are below ``SIMILAR``;
- ``deletion``, ``insertion``: the mean AOPC of the logit as pixels are
  removed from the drawing, or put back on a blank canvas, most relevant
  first (:mod:`server.explain.faithfulness`; 20 steps of 10 pixels), and
  ``random``: the same for a random order;
- ``faithfulness``: deletion + insertion AOPC, the two read together.

The digits are the first N official test digits when ``MNIST_DIR`` is set
(default N = 1,000), else the first N of the 500 embedded held-out digits
(default 500).  The last line names the LRP preset the measurement chooses:
the best ``faithfulness`` among those that pass the randomisation test.
"""

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model_store import load_model
from model_store.datasets import load_embedded, load_idx, mnist_dir_from_env, split_embedded
from server.explain import faithfulness as f
from server.explain.engine import Engine, Request, Selection
from server.explain.methods import CAPTUM_METHODS
from server.explain.rules import RULES
from server.explain.sanity import RANDOMIZATIONS, SIMILAR, randomized_model

MODELS = ("default", "h16")
CONFIGS: tuple[tuple[str, str], ...] = tuple(("lrp", rule) for rule in RULES) + tuple(
    (method, "epsilon") for method in CAPTUM_METHODS)
CHUNK = 25


@dataclass(frozen=True)
class Row:
    """The means over the digits for one method (and rule, for ``lrp``)."""

    method: str
    rule: str | None
    rho_fc2: float
    rho_fc2_fc1: float
    passes_randomization: bool
    deletion: float
    insertion: float
    faithfulness: float


def digits(n: int | None) -> tuple[np.ndarray, str]:
    """The benchmark's digits ``(N, 28, 28)`` float32 in [0, 1] and where they come from."""
    directory = mnist_dir_from_env()
    if directory is not None:
        images = load_idx(directory, "test")[0][:n or 1000]
        return images, f"the first {len(images)} official MNIST test digits"
    _, (held_out, _) = split_embedded(*load_embedded())
    images = held_out[:n or len(held_out)]
    return images, f"{len(images)} embedded held-out digits (MNIST_DIR is not set)"


def heatmaps(engine: Engine, images: np.ndarray, targets: Sequence[int], method: str, rule: str) -> np.ndarray:
    requests = [Request(image, Selection(output=int(c)), method=method, rule=rule) for image, c in zip(images, targets)]
    return np.stack([frame.heatmap for frame in engine.explain(requests)])


def logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images).double()).numpy()


def measure(name: str, images: np.ndarray, progress: bool) -> tuple[list[Row], dict[str, float]]:
    """The rows of one model over ``images``, and the random order's deletion and insertion AOPC."""
    model = load_model(name)
    scorer = model.double().eval()
    engine = Engine(model, randomized=False)
    copies = [Engine(randomized_model(model, layers), randomized=False) for _, layers in RANDOMIZATIONS]
    sums: dict[tuple[str, str], np.ndarray] = {config: np.zeros(4) for config in CONFIGS}
    random_sums = np.zeros(2)
    chunks = range(0, len(images), CHUNK)
    for start in tqdm(chunks, desc=name, disable=not progress):
        batch = images[start:start + CHUNK]
        targets = logits(scorer, batch).argmax(axis=1)
        for config in CONFIGS:
            real = heatmaps(engine, batch, targets, *config)
            randomized = [heatmaps(copy, batch, targets, *config) for copy in copies]
            for b, (image, target) in enumerate(zip(batch, targets)):
                seed = start + b
                order = f.relevance_order(real[b], seed)
                curves = logits(scorer, np.concatenate([f.deletion_images(image, order),
                                                        f.insertion_images(image, order)]))[:, target]
                deletion, insertion = np.split(curves, 2)
                sums[config] += [f.rank_correlation(real[b], randomized[0][b], image > 0),
                                 f.rank_correlation(real[b], randomized[1][b], image > 0),
                                 f.deletion_aopc(deletion), f.insertion_aopc(insertion)]
        for b, (image, target) in enumerate(zip(batch, targets)):
            order = f.random_order(image.size, start + b)
            curves = logits(scorer, np.concatenate([f.deletion_images(image, order),
                                                    f.insertion_images(image, order)]))[:, target]
            deletion, insertion = np.split(curves, 2)
            random_sums += [f.deletion_aopc(deletion), f.insertion_aopc(insertion)]
    rows = []
    for (method, rule), total in sums.items():
        rho_fc2, rho_both, deletion, insertion = total / len(images)
        rows.append(Row(method, rule if method == "lrp" else None, round(rho_fc2, 3), round(rho_both, 3),
                        bool(max(rho_fc2, rho_both) < SIMILAR), round(deletion, 3), round(insertion, 3),
                        round(deletion + insertion, 3)))
    random_deletion, random_insertion = random_sums / len(images)
    return rows, {"deletion": round(random_deletion, 3), "insertion": round(random_insertion, 3),
                  "faithfulness": round(random_deletion + random_insertion, 3)}


def chosen_preset(rows: Sequence[Row]) -> str | None:
    """The LRP preset with the best faithfulness among those passing the randomisation test."""
    passing = [row for row in rows if row.method == "lrp" and row.passes_randomization]
    return max(passing, key=lambda row: row.faithfulness).rule if passing else None


def markdown(name: str, rows: Sequence[Row], random: dict[str, float]) -> str:
    lines = [f"**{name}**", "",
             "| method | ρ, fc2 random | ρ, fc2+fc1 random | randomisation | deletion AOPC | insertion AOPC "
             "| deletion + insertion |",
             "|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda row: -row.faithfulness):
        label = f"LRP {row.rule}" if row.method == "lrp" else row.method
        lines.append(f"| {label} | {row.rho_fc2:.2f} | {row.rho_fc2_fc1:.2f} | "
                     f"{'passes' if row.passes_randomization else 'fails'} | {row.deletion:.2f} | "
                     f"{row.insertion:.2f} | {row.faithfulness:.2f} |")
    lines.append(f"| random order | – | – | – | {random['deletion']:.2f} | {random['insertion']:.2f} | "
                 f"{random['faithfulness']:.2f} |")
    lines += ["", f"Chosen LRP preset (passes randomisation, best deletion + insertion): "
                  f"`{chosen_preset(rows)}`", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of Markdown")
    parser.add_argument("--n", type=int, default=None,
                        help="digits per model (default: 1000 official test digits, else the 500 held-out ones)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images, source = digits(args.n)
    started = time.perf_counter()
    results = {name: measure(name, images, progress=not args.json) for name in args.models}
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"digits": len(images), "source": source, "seconds": round(seconds, 1),
                          "similar": SIMILAR, "steps": f.STEPS, "pixels_per_step": f.PIXELS_PER_STEP,
                          "models": {name: {"rows": [asdict(row) for row in rows], "random": random,
                                            "chosen_preset": chosen_preset(rows)}
                                     for name, (rows, random) in results.items()}}, indent=1))
        return
    print(f"Faithfulness over {source}, predicted class; {seconds:.0f} s.\n")
    for name, (rows, random) in results.items():
        print(markdown(name, rows, random))


if __name__ == "__main__":
    main()
