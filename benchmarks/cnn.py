"""The cnn's frame against zennit and against an MLP frame, in one run and one thread.

``python -m benchmarks.cnn [--json] [--repeats N]`` measures, on official-test-like inputs (the golden digits
drawn through ``server.raster``, cycled to fill the batch), for B = 1 and B = 16:

- ``backend``: the fast backend (:class:`~server.explain.cnn.ConvBackend`) alone doing zennit's work below:
  the forward pass of the batch and the CRP map of one ``conv2`` channel per drawing, from float64 pixels
  (it also returns the edges and every channel's relevance, which zennit-crp does not);
- ``zennit``: the same CRP maps from zennit-crp (``CondAttribution`` under zennit's composite, the batch in one
  call, its own forward pass included): the library the fast backend replaces;
- ``cnn``: ``Engine.explain`` of the store's ``cnn`` with the fast backend, the same selection (forward pass,
  the channel's map, the class's map for its scale, every channel's relevance, the feeds from ``conv1``,
  the frame's numbers): what a frame computes;
- ``mlp``: ``Engine.explain`` of the default MLP with a CRP map of one hidden neuron per drawing.

It prints the median milliseconds per frame of each, and the ratios the cnn issue sets goals for:
zennit / backend (goal ≥ 10 at B = 1, ≥ 4 at B = 16), and cnn / mlp (goal ≤ 3 at B = 16; the goal itself is
``benchmarks.framecost``'s, which adds rasterising and encoding); zennit / cnn for the whole frame.
``--rule`` picks the preset (default: the cnn's default, ``epsilon_plus_flat``).  All in one process on
one thread, the four taking turns, so a slower or busier host moves every number but the ratios much less.
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
from server.explain.cnn import CNN_RULES, DEFAULT_CNN_RULE, ConvBackend
from server.explain.cnn_reference import COMPOSITES
from server.explain.engine import Engine, Request, Selection
from server.explain.forward import DTYPE
from server.explain.modes import Start
from server.raster import rasterize

BATCHES = (1, 16)
CHANNEL = 5


def median_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each call in milliseconds over ``repeats`` rounds, after two warm-up rounds.

    The calls take turns within each round, so that a host whose load changes during the run slows
    them alike and their ratios hold (measured one after the other, a busy minute lands on one of them).
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(repeats + 2):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            if round_ >= 2:
                samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) * 1000.0 for name, values in samples.items()}


def drawings(count: int) -> np.ndarray:
    golden = list(load_golden_digits().values())
    return np.stack([rasterize(golden[index % len(golden)]) for index in range(count)])


def measure_batch(batch: int, rule: str, cnn_engine: Engine, mlp_engine: Engine, backend: ConvBackend,
                  attribution: CondAttribution, repeats: int) -> dict[str, float]:
    """Median milliseconds per frame of the backend, zennit, the cnn frame and the MLP frame at batch ``batch``,
    and their ratios."""
    images = drawings(batch)
    conv_requests = [Request(image, Selection(hidden=CHANNEL, layer="conv2"), rule=rule) for image in images]
    mlp_requests = [Request(image, Selection(hidden=CHANNEL), rule="gamma") for image in images]
    predicted = [frame.target for frame in cnn_engine.explain(conv_requests)]
    pixels = torch.from_numpy(images.reshape(batch, -1)).to(DTYPE)
    starts = [Start("crp", c, CHANNEL, None, "conv2") for c in predicted]
    tensor = torch.from_numpy(images).reshape(batch, 1, 28, 28)
    composite = COMPOSITES[rule]()

    def fast() -> object:
        return backend.explain(backend.forward(pixels), rule, starts)

    def reference() -> object:
        return attribution(tensor.clone().requires_grad_(True),
                           [{"conv2": [CHANNEL], "y": [c]} for c in predicted], composite)

    ms = median_ms({"backend": fast, "zennit": reference, "cnn": lambda: cnn_engine.explain(conv_requests),
                    "mlp": lambda: mlp_engine.explain(mlp_requests)}, repeats)
    per_frame = {name: value / batch for name, value in ms.items()}
    return {**{f"{name}_ms_per_frame": round(value, 4) for name, value in per_frame.items()},
            "zennit_over_backend": round(per_frame["zennit"] / per_frame["backend"], 2),
            "zennit_over_cnn": round(per_frame["zennit"] / per_frame["cnn"], 2),
            "cnn_over_mlp": round(per_frame["cnn"] / per_frame["mlp"], 2)}


def run(repeats: int, rule: str = DEFAULT_CNN_RULE) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    cnn, mlp = load_model("cnn"), load_model("default")
    cnn_engine, mlp_engine = Engine(cnn, randomized=False), Engine(mlp, randomized=False)
    backend = ConvBackend(cnn)
    attribution = CondAttribution(cnn.float().eval())
    return {f"B={batch}": measure_batch(batch, rule, cnn_engine, mlp_engine, backend, attribution, repeats)
            for batch in BATCHES}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cnn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rule", choices=list(CNN_RULES), default=DEFAULT_CNN_RULE)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run(args.repeats, args.rule)
    print(json.dumps(results, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
