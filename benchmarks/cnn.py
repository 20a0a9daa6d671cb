"""The cnn's frame against zennit and against an MLP frame, in one run and one thread.

``python -m benchmarks.cnn [--json] [--repeats N]`` measures, on official-test-like inputs (the golden digits
drawn through ``server.raster``, cycled to fill the batch), for B = 1 and B = 16:

- ``cnn``: ``Engine.explain`` of the store's ``cnn`` with the fast backend, a CRP map of one ``conv2`` channel
  per drawing (forward pass, the channel's map, the class's map for its scale, every channel's relevance,
  the feeds from ``conv1``): what a frame computes;
- ``zennit``: the same CRP map from zennit-crp (``CondAttribution`` under zennit's composite, the batch in one
  call): the library the fast backend replaces;
- ``mlp``: ``Engine.explain`` of the default MLP with a CRP map of one hidden neuron per drawing.

It prints the median milliseconds per frame of each, and the ratios the cnn issue sets goals for:
zennit / cnn (goal ≥ 10 at B = 1, ≥ 4 at B = 16) and cnn / mlp (goal ≤ 3 at B = 16).  All in one process on
one thread, so a slower or busier host moves every number but the ratios much less.
"""

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from crp.attribution import CondAttribution

from model_store import load_model
from model_store.strokes import load_golden_digits
from server.explain.cnn_reference import COMPOSITES
from server.explain.engine import Engine, Request, Selection
from server.raster import rasterize

BATCHES = (1, 16)
RULE = "epsilon_plus_flat"
CHANNEL = 5


def median_ms(call: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``call`` in milliseconds over ``repeats`` runs, after two warm-up runs."""
    for _ in range(2):
        call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000.0


def drawings(count: int) -> np.ndarray:
    golden = list(load_golden_digits().values())
    return np.stack([rasterize(golden[index % len(golden)]) for index in range(count)])


def measure_batch(batch: int, cnn_engine: Engine, mlp_engine: Engine, attribution: CondAttribution,
                  repeats: int) -> dict[str, float]:
    """Median milliseconds per frame of the cnn, zennit and the MLP at batch ``batch``, and their ratios."""
    images = drawings(batch)
    conv_requests = [Request(image, Selection(hidden=CHANNEL, layer="conv2"), rule=RULE) for image in images]
    mlp_requests = [Request(image, Selection(hidden=CHANNEL), rule="gamma") for image in images]
    predicted = [frame.target for frame in cnn_engine.explain(conv_requests)]
    tensor = torch.from_numpy(images).reshape(batch, 1, 28, 28)
    composite = COMPOSITES[RULE]()

    def reference() -> object:
        return attribution(tensor.clone().requires_grad_(True),
                           [{"conv2": [CHANNEL], "y": [c]} for c in predicted], composite)

    ms = {"cnn": median_ms(lambda: cnn_engine.explain(conv_requests), repeats),
          "zennit": median_ms(reference, repeats),
          "mlp": median_ms(lambda: mlp_engine.explain(mlp_requests), repeats)}
    per_frame = {name: value / batch for name, value in ms.items()}
    return {**{f"{name}_ms_per_frame": round(value, 4) for name, value in per_frame.items()},
            "zennit_over_cnn": round(per_frame["zennit"] / per_frame["cnn"], 2),
            "cnn_over_mlp": round(per_frame["cnn"] / per_frame["mlp"], 2)}


def run(repeats: int) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    cnn, mlp = load_model("cnn"), load_model("default")
    cnn_engine, mlp_engine = Engine(cnn, randomized=False), Engine(mlp, randomized=False)
    attribution = CondAttribution(cnn.float().eval())
    return {f"B={batch}": measure_batch(batch, cnn_engine, mlp_engine, attribution, repeats) for batch in BATCHES}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cnn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.repeats)
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
