"""Engine benchmark: raster, one frame, all maps (fast and reference), and each method's cost.

``python -m benchmarks.engine [--json] [--quick]`` measures, for the shipped
``h16`` and ``default`` models and batches of B = 1 and B = 32 drawings of
100 points each (golden digits, resampled), in one run and one thread:

(a) ``rasterize`` of the B drawings;
(b) ``Engine.explain`` with the fast backend: one frame per drawing
    (prediction, activations, hidden relevances, edges, a CRP map);
(c) ``Engine.all_maps`` with the fast backend: all 10 class maps and all H
    hidden-neuron maps of each drawing;
(d) the same maps from the reference backend, one zennit / CRP call per map;

and the ratio (d)/(c).  Then (e) each attribution method at B = 1, with the
cost class its median implies (``per-frame`` up to
``server.explain.methods.PER_FRAME_BUDGET_MS``) next to the declared one.
Times are median and 99th percentile in milliseconds over ``n`` repetitions
(fewer for the slow reference backend).  ``--json`` prints one JSON object.
"""

import argparse
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from model_store import load_model
from model_store.strokes import load_golden_digits
from server.explain.engine import Engine, Request, Selection
from server.explain.methods import METHODS, PER_FRAME_BUDGET_MS
from server.raster import rasterize

MODELS = ("h16", "default")
BATCHES = (1, 32)
POINTS_PER_DRAWING = 100
RULE = "epsilon"
FRAME_GOAL_MS = 0.5
RATIO_GOAL = 100.0


@dataclass(frozen=True)
class Timing:
    """Median and 99th percentile in milliseconds over ``n`` timed repetitions."""

    median_ms: float
    p99_ms: float
    n: int


def measure(call: Callable[[], object], min_repeats: int, min_seconds: float, warmup: int = 3) -> Timing:
    """Time ``call`` at least ``min_repeats`` times and for at least ``min_seconds``."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_repeats or time.perf_counter() - started < min_seconds:
        before = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - before) / 1e6)
    return Timing(float(np.median(samples)), float(np.percentile(samples, 99)), len(samples))


def resample(strokes: Sequence[Sequence[tuple[float, float]]], points: int) -> list[list[list[float]]]:
    """The drawing with ``points`` points in all, spaced evenly along each stroke's length."""
    paths = [np.asarray(stroke, dtype=np.float64) for stroke in strokes]
    lengths = np.array([np.linalg.norm(np.diff(path, axis=0), axis=1).sum() for path in paths])
    shares = np.maximum(2, np.round(points * lengths / lengths.sum()).astype(int))
    shares[np.argmax(shares)] += points - shares.sum()
    drawing = []
    for path, count in zip(paths, shares):
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
        where = np.linspace(0.0, arc[-1], count)
        drawing.append(np.stack([np.interp(where, arc, path[:, 0]), np.interp(where, arc, path[:, 1])], 1).tolist())
    return drawing


def workload(batch: int) -> list[list[list[list[float]]]]:
    """``batch`` drawings of ``POINTS_PER_DRAWING`` points, cycling through the golden digits."""
    golden = load_golden_digits()
    return [resample(golden[b % 10], POINTS_PER_DRAWING) for b in range(batch)]


def bench_raster(batch: int, quick: bool) -> Timing:
    drawings = workload(batch)
    return measure(lambda: [rasterize(drawing) for drawing in drawings], 50 if quick else 300, 0.2 if quick else 1.0)


def bench_model(name: str, batch: int, quick: bool, progress: tqdm) -> dict:
    model = load_model(name)
    fast, reference = Engine(model), Engine(model, backend="reference")
    images = np.stack([rasterize(drawing) for drawing in workload(batch)])
    # A CRP selection per drawing: its own class and a neuron that varies along the batch.
    requests = [Request(image, Selection(output=b % 10, hidden=(7 * b) % fast.hidden), rule=RULE)
                for b, image in enumerate(images)]
    frame = measure(lambda: fast.explain(requests), 50 if quick else 300, 0.2 if quick else 1.0)
    progress.update()
    all_fast = measure(lambda: fast.all_maps(images, RULE), 20 if quick else 100, 0.2 if quick else 1.0)
    progress.update()
    slow_repeats = 1 if quick else (10 if batch == 1 else 3)
    all_reference = measure(lambda: reference.all_maps(images, RULE), slow_repeats, 0.0, warmup=1)
    progress.update()
    return {"hidden": fast.hidden, "frame": asdict(frame), "all_maps_fast": asdict(all_fast),
            "all_maps_reference": asdict(all_reference),
            "reference_over_fast": all_reference.median_ms / all_fast.median_ms}


def bench_methods(name: str, quick: bool, progress: tqdm) -> dict:
    engine = Engine(load_model(name))
    image = rasterize(workload(1)[0])
    figures = {}
    for method, info in METHODS.items():
        request = [Request(image, Selection(), method=method, rule=RULE)]
        timing = measure(lambda batch=request: engine.explain(batch), 5 if quick else 30, 0.1 if quick else 0.5)
        measured = "per-frame" if timing.median_ms <= PER_FRAME_BUDGET_MS else "on-pause"
        figures[method] = {**asdict(timing), "declared": info.cost, "measured": measured}
        progress.update()
    return figures


def run(quick: bool) -> dict:
    torch.set_num_threads(1)
    steps = len(BATCHES) + len(MODELS) * (3 * len(BATCHES) + len(METHODS))
    with tqdm(total=steps, desc="engine benchmark", leave=False) as progress:
        raster = {}
        for batch in BATCHES:
            raster[f"B={batch}"] = asdict(bench_raster(batch, quick))
            progress.update()
        models = {name: {f"B={batch}": bench_model(name, batch, quick, progress) for batch in BATCHES}
                  for name in MODELS}
        methods = {name: bench_methods(name, quick, progress) for name in MODELS}
    return {"machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
                        "torch": torch.__version__},
            "points_per_drawing": POINTS_PER_DRAWING, "rule": RULE, "quick": quick,
            "raster": raster, "models": models, "methods": methods}


def cell(timing: dict) -> str:
    return f"{timing['median_ms']:.3f} / {timing['p99_ms']:.3f} (n={timing['n']})"


def table(result: dict) -> str:
    """The figures as the Markdown tables of ``docs/benchmarks.md``."""
    lines = ["(a) raster, ms median / p99:", "", "| B | raster |", "|---|---|"]
    lines += [f"| {key[2:]} | {cell(timing)} |" for key, timing in result["raster"].items()]
    lines += ["", "(b)–(d), ms median / p99, and the ratio of medians (d)/(c):", "",
              "| model | H | B | (b) fast, one frame | (c) fast, all 10+H maps | (d) reference, all maps | (d)/(c) |",
              "|---|---|---|---|---|---|---|"]
    for name, batches in result["models"].items():
        for key, figures in batches.items():
            lines.append(f"| {name} | {figures['hidden']} | {key[2:]} | {cell(figures['frame'])} "
                         f"| {cell(figures['all_maps_fast'])} | {cell(figures['all_maps_reference'])} "
                         f"| {figures['reference_over_fast']:.0f}× |")
    lines += ["", f"(e) methods at B = 1, ms median / p99 (per-frame if median ≤ {PER_FRAME_BUDGET_MS} ms):", "",
              "| method | " + " | ".join(MODELS) + " | declared | measured |",
              "|---|" + "---|" * len(MODELS) + "---|---|"]
    for method in METHODS:
        per_model = [result["methods"][name][method] for name in MODELS]
        measured = "on-pause" if "on-pause" in {figures["measured"] for figures in per_model} else "per-frame"
        lines.append(f"| {method} | " + " | ".join(cell(figures) for figures in per_model)
                     + f" | {METHODS[method].cost} | {measured} |")
    return "\n".join(lines)


def goals(result: dict) -> str:
    frame = max(batches["B=1"]["frame"]["median_ms"] for batches in result["models"].values())
    ratio = min(figures["reference_over_fast"] for batches in result["models"].values()
                for figures in batches.values())
    return (f"goal (b) ≤ {FRAME_GOAL_MS} ms median at B = 1: {frame:.3f} ms, "
            f"{'met' if frame <= FRAME_GOAL_MS else 'MISSED'}; "
            f"goal (d)/(c) ≥ {RATIO_GOAL:.0f}×: {ratio:.0f}×, {'met' if ratio >= RATIO_GOAL else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--quick", action="store_true", help="few repetitions: a smoke test, not a measurement")
    arguments = parser.parse_args()
    result = run(arguments.quick)
    print(json.dumps(result) if arguments.json else f"{table(result)}\n\n{goals(result)}")


if __name__ == "__main__":
    main()
