"""Latency benchmark: how fast visitors see their drawing explained, and for how many.

``python -m benchmarks.latency`` starts each server variant on loopback in
turn, and for every number of visitors N in ``--visitors`` runs N simulated
visitors (:mod:`benchmarks.workload`, :mod:`benchmarks.loadgen`) for
``--duration`` seconds.  ``--url ws://host:port/ws`` measures a running
deployment instead (no baselines).

Latency is measured per input message: from sending the message with
``seq`` n to receiving the first frame whose ``seq`` is ≥ n, i.e. the first
frame the visitor sees that includes that input.  Messages folded into a
later frame (latest-wins) therefore count with their full wait.  Messages
still unanswered ``--drain`` seconds after the window count as infinitely
late: a percentile they reach is reported as ``null`` (JSON) / ``inf``.

Variants (``--servers``): ``server`` (ours: ``PROCESSES`` server processes,
one per usable core), ``single`` (ours in one process), and the baselines measured in
the same run: ``reference`` (a) the zennit / zennit-crp backend,
``no_coalescing`` (b) one frame per message in order, no micro-batching,
``floor`` (c) the same Starlette + uvicorn stack replying with a frame-sized
message and no work (``benchmarks/floor_server.py``).

Server CPU and memory (``server_rss_mb``: despite its name, the PSS summed
over the server process and its descendants, supervisor included, at the end
of the step's window; with ``--url``, the RSS that ``/metrics`` reports for a
one-process server, none for a replica) come from ``/proc``; client
CPU is the load generator's processes, reported apart so that a reader can
tell which side saturated (they share the machine's cores).
"""

import argparse
import math
import os
import platform
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
from tqdm import tqdm

from .loadgen import LoadSpec, Observation, run_load
from .targets import KINDS, Kind, LocalServer, Probe, kinds_named, metrics_url, origin_for, sample_metrics
from .workload import Pace, load_drawings

GOAL_P99_MS = 33.0  # two display frames at 60 Hz
GOAL_ONE_VISITOR_P99_MS = 3.0  # issue 13 (issue 7 had 5 ms)
GOAL_VISITORS = 100
GOAL_FPS_RATIO = 10.0
PERCENTILES = {"p50": 50, "p95": 95, "p99": 99, "max": 100}
PACES = {"digits": Pace, "continuous": Pace.continuous}


def percentiles(values: np.ndarray, unanswered: int) -> dict[str, float | None]:
    """p50/p95/p99/max of ``values`` (ms) with ``unanswered`` extra samples at +inf.

    ``inverted_cdf`` picks an observed sample (no interpolation towards
    infinity); an infinite result is returned as ``None``.
    """
    if values.size + unanswered == 0:
        return {name: None for name in PERCENTILES}
    samples = np.concatenate([values.astype(np.float64), np.full(unanswered, np.inf)])
    result = {}
    for name, q in PERCENTILES.items():
        value = float(np.percentile(samples, q, method="inverted_cdf"))
        result[name] = round(value, 3) if math.isfinite(value) else None
    return result


def summarise(observation: Observation, visitors: int) -> dict:
    """Every figure of one step, from the merged client tallies and the server samples."""
    tallies = observation.tallies
    merged = {key: sum(tally[key] for tally in tallies)
              for key in ("sent", "frames", "coalesced", "unanswered", "connected")}
    latency = np.concatenate([tally["latency_ms"] for tally in tallies])
    frame_latency = np.concatenate([tally["frame_latency_ms"] for tally in tallies])
    tick_lag = np.concatenate([tally["tick_lag_ms"] for tally in tallies])
    compute = np.concatenate([tally["compute_ms"] for tally in tallies])
    errors = sum((Counter(tally["errors"]) for tally in tallies), Counter())
    wall_s = observation.wall_s
    connected = max(merged["connected"], 1)
    before, after = observation.server_before, observation.server_after
    server_cpu = None if before is None or after is None else \
        round((after.cpu_s - before.cpu_s) / (after.at_s - before.at_s), 3)
    return {
        "visitors": visitors,
        "connected": merged["connected"],
        "latency_ms": percentiles(latency, merged["unanswered"]),
        "frame_latency_ms": percentiles(frame_latency, 0),
        # The server's own time for each frame in the window (its batch's raster, engine call and encoding).
        "compute_ms": percentiles(compute, 0) if len(compute) else None,
        "input_messages": merged["sent"],
        "input_rate_per_visitor_hz": round(merged["sent"] / connected / wall_s, 2),
        "frames": merged["frames"],
        "frames_per_s": round(merged["frames"] / wall_s, 1),
        "frames_per_s_per_visitor": round(merged["frames"] / connected / wall_s, 2),
        "coalesced_fraction": round(merged["coalesced"] / max(merged["sent"], 1), 4),
        "unanswered": merged["unanswered"],
        "errors": dict(sorted(errors.items())),
        "server_cpu_cores": server_cpu,
        "server_rss_mb": None if after is None else round(after.memory_bytes / 2**20, 1),
        "client_cpu_cores": round(sum(tally["cpu_s"] for tally in tallies) / wall_s, 3),
        "client_processes": len(tallies),
        "client_tick_lag_ms_p99": percentiles(tick_lag, 0)["p99"],
    }


def p99_of(step: dict) -> float:
    """A step's p99 latency, +inf when unanswered messages reach it or the step was skipped."""
    value = step.get("latency_ms", {}).get("p99")
    return math.inf if value is None else value


def largest_within(steps: Sequence[dict], limit_ms: float) -> int | None:
    """The largest N whose p99 ≤ ``limit_ms``, every smaller N also within it (else ``None``)."""
    best = None
    for step in sorted(steps, key=lambda item: item["visitors"]):
        if p99_of(step) > limit_ms:
            break
        best = step["visitors"]
    return best


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator in (None, 0) or not math.isfinite(numerator):
        return None
    return round(numerator / denominator, 2)


def compare(results: dict[str, list[dict]]) -> dict:
    """Baselines as ratios to our server, per N (p99 latency and frames/s) and at capacity."""
    ours = {step["visitors"]: step for step in results.get("server", []) if "latency_ms" in step}
    comparison = {}
    for kind, steps in results.items():
        if kind == "server" or not ours:
            continue
        per_n = {}
        for step in steps:
            mine = ours.get(step["visitors"])
            if mine is None or "latency_ms" not in step:
                continue
            per_n[str(step["visitors"])] = {
                "p99_ratio_baseline_over_ours": ratio(p99_of(step), p99_of(mine)),
                "frames_per_s_ratio_ours_over_baseline": ratio(mine["frames_per_s"], step["frames_per_s"]),
            }
        capacity = max((step["frames_per_s"] for step in steps if "frames_per_s" in step), default=None)
        our_capacity = max(step["frames_per_s"] for step in ours.values())
        comparison[kind] = {"per_visitors": per_n,
                            "max_frames_per_s": capacity,
                            "max_frames_per_s_ratio_ours_over_baseline": ratio(our_capacity, capacity)}
    return comparison


def goals(results: dict[str, list[dict]], comparison: dict) -> dict:
    """The issue's goals for this machine, each with the measured value and whether it is met."""
    ours = [step for step in results.get("server", []) if "latency_ms" in step]
    one = next((step for step in ours if step["visitors"] == 1), None)
    one_p99 = None if one is None else one["latency_ms"]["p99"]
    within = largest_within(ours, GOAL_P99_MS) if ours else None
    fps_ratio = comparison.get("reference", {}).get("max_frames_per_s_ratio_ours_over_baseline")
    return {
        "one_visitor_p99_ms": {"goal": f"<= {GOAL_ONE_VISITOR_P99_MS}", "measured": one_p99,
                               "met": None if one_p99 is None else one_p99 <= GOAL_ONE_VISITOR_P99_MS},
        "visitors_within_p99_33ms": {"goal": f">= {GOAL_VISITORS}", "measured": within,
                                     "met": None if not ours else (within or 0) >= GOAL_VISITORS},
        "frames_per_s_vs_reference": {"goal": f">= {GOAL_FPS_RATIO}x", "measured": fps_ratio,
                                      "met": None if fps_ratio is None else fps_ratio >= GOAL_FPS_RATIO},
    }


def machine() -> dict:
    """What the figures were measured on, including the load already on the machine."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average_at_start": [round(value, 2) for value in os.getloadavg()]}


def measure(kind_name: str, url: str, origin: str, probe: Probe, visitor_counts: Sequence[int],
            args: argparse.Namespace, drawings: tuple, progress: tqdm) -> list[dict]:
    """Sweep ``visitor_counts`` against one server; skip the rest once p99 passes ``--stop-above-ms``."""
    steps: list[dict] = []
    for count in visitor_counts:
        if steps and p99_of(steps[-1]) > args.stop_above_ms:
            steps.append({"visitors": count, "skipped": f"p99 above {args.stop_above_ms} ms "
                                                         f"at {steps[-1]['visitors']} visitors"})
        else:
            spec = LoadSpec(url=url, origin=origin, visitors=count, processes=args.processes,
                            duration_s=args.duration, drawings=drawings, pace=PACES[args.pace](),
                            drain_s=args.drain, seed=args.seed)
            steps.append({"server": kind_name, **summarise(run_load(spec, probe), count)})
            progress.set_postfix_str(f"{kind_name} N={count} p99={steps[-1]['latency_ms']['p99']} ms")
        progress.update(1)
    return steps


def run(args: argparse.Namespace) -> dict:
    """The whole benchmark: every variant (or the given URL) over every N."""
    drawings_list, source = load_drawings(args.digits, seed=args.seed)
    drawings = tuple(tuple(tuple(stroke) for stroke in drawing) for drawing in drawings_list)
    kinds: list[Kind] = [] if args.url else kinds_named(args.servers)
    total = len(args.visitors) * (1 if args.url else len(kinds))
    results: dict[str, list[dict]] = {}
    report = {"machine": machine(), "drawings": {"count": len(drawings), "source": source},
              "settings": {"visitors": args.visitors, "duration_s": args.duration, "drain_s": args.drain,
                           "client_processes": args.processes, "model": args.model,
                           "pace": {"name": args.pace, **PACES[args.pace]().__dict__},
                           "target": args.url or "local servers on loopback"}}
    with tqdm(total=total, desc="latency", unit="step", file=sys.stderr, disable=args.quiet) as progress:
        if args.url:
            origin = args.origin or origin_for(args.url)
            probe_url = metrics_url(args.url)
            results["url"] = measure("url", args.url, origin, lambda: sample_metrics(probe_url),
                                     args.visitors, args, drawings, progress)
        for kind in kinds:
            environment = {"MAX_CONNECTIONS": str(max(args.visitors) + 50)}
            with LocalServer(kind, args.model, environment) as server:
                results[kind.name] = measure(kind.name, server.url, server.origin, server.probe,
                                             args.visitors, args, drawings, progress)
    comparison = compare(results)
    report.update(results=results, labels={name: KINDS[name].label for name in results if name in KINDS},
                  largest_visitors_within_p99_33ms={name: largest_within(
                      [step for step in steps if "latency_ms" in step], GOAL_P99_MS)
                      for name, steps in results.items()},
                  comparison=comparison, goals=goals(results, comparison))
    return report


def format_table(report: dict) -> str:
    """A plain-text table of the main figures, one row per variant and N."""
    header = (f"{'server':<14}{'N':>5}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'fps':>8}{'fps/v':>7}"
              f"{'in/v':>6}{'coal':>6}{'srvCPU':>7}{'cliCPU':>7}{'PSS MB':>8}  errors")
    lines = ["latency per input message, ms; fps = frames/s; in/v = input messages/s per visitor; "
             "CPU in cores", header]

    def cell(value: float | None, missing: str = "inf") -> str:
        """A latency (``None``: unanswered, shown as inf) or a server figure (``None``: not available)."""
        return missing if value is None else f"{value:.1f}"

    for name, steps in report["results"].items():
        for step in steps:
            if "skipped" in step:
                lines.append(f"{name:<14}{step['visitors']:>5}  skipped: {step['skipped']}")
                continue
            latency = step["latency_ms"]
            lines.append(
                f"{name:<14}{step['visitors']:>5}{cell(latency['p50']):>8}{cell(latency['p95']):>8}"
                f"{cell(latency['p99']):>8}{cell(latency['max']):>8}{step['frames_per_s']:>8.0f}"
                f"{step['frames_per_s_per_visitor']:>7.1f}{step['input_rate_per_visitor_hz']:>6.1f}"
                f"{step['coalesced_fraction']:>6.2f}{cell(step['server_cpu_cores'], 'n/a'):>7}"
                f"{step['client_cpu_cores']:>7.2f}{cell(step['server_rss_mb'], 'n/a'):>8}  {step['errors'] or ''}")
    lines.append(f"largest N with p99 <= {GOAL_P99_MS:.0f} ms: {report['largest_visitors_within_p99_33ms']}")
    for name, goal in report["goals"].items():
        lines.append(f"goal {name}: {goal['goal']}, measured {goal['measured']}, met: {goal['met']}")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The same figures as :func:`format_table`, as a Markdown table (for docs/benchmarks.md)."""

    def cell(value: float | None, digits: int, missing: str = "∞") -> str:
        return missing if value is None else f"{value:.{digits}f}"

    columns = ["server", "N", "p50 ms", "p95 ms", "p99 ms", "max ms", "frames/s", "frames/s per visitor",
               "inputs/s per visitor", "coalesced", "server CPU (cores)", "client CPU (cores)",
               "server PSS MB", "errors"]
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "--:|" * (len(columns) - 2) + "---|"]
    for name, steps in report["results"].items():
        for step in steps:
            if "skipped" in step:
                lines.append(f"| {name} | {step['visitors']} | skipped: {step['skipped']} |"
                             + " |" * (len(columns) - 3))
                continue
            latency = step["latency_ms"]
            errors = ", ".join(f"{code} × {count}" for code, count in step["errors"].items())
            lines.append(" | ".join([
                f"| {name}", str(step["visitors"]),
                *(cell(latency[key], 1) for key in ("p50", "p95", "p99", "max")),
                f"{step['frames_per_s']:.0f}", f"{step['frames_per_s_per_visitor']:.1f}",
                f"{step['input_rate_per_visitor_hz']:.1f}", f"{step['coalesced_fraction']:.0%}",
                cell(step["server_cpu_cores"], 2, "n/a"), f"{step['client_cpu_cores']:.2f}",
                cell(step["server_rss_mb"], 0, "n/a"), f"{errors} |"]))
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    """Latency percentiles against N, one colour per variant, the 33 ms goal as a line (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    for colour, (name, steps) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], report["results"].items()):
        measured = [step for step in steps if "latency_ms" in step]
        counts = [step["visitors"] for step in measured]
        for key, style in (("p50", ":"), ("p95", "--"), ("p99", "-")):
            # An unanswered percentile (None) is drawn as a gap.
            values = [np.nan if step["latency_ms"][key] is None else step["latency_ms"][key] for step in measured]
            axes.plot(counts, values, style, marker="o", markersize=3, color=colour,
                      label=f"{report['labels'].get(name, name)} {key}" if key == "p99" else None)
    axes.set(xscale="log", yscale="log", xlabel="visitors (N)", ylabel="input → frame latency, ms",
             title="Latency vs visitors (solid p99, dashed p95, dotted p50)")
    axes.axhline(GOAL_P99_MS, color="grey", linewidth=0.8)
    # x in axes fraction, y in data units: the label stays at the right edge whatever the x range.
    axes.text(0.99, GOAL_P99_MS, "p99 goal 33 ms", transform=axes.get_yaxis_transform(),
              ha="right", va="bottom", fontsize=8, color="grey")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _counts(text: str) -> list[int]:
    counts = sorted({int(item) for item in text.split(",") if item.strip()})
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return counts


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.latency",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--visitors", type=_counts, default=_counts("1,10,50,100,200"),
                        help="numbers of simulated visitors to sweep, comma separated")
    parser.add_argument("--duration", type=float, default=5.0, help="measuring window per step, seconds")
    parser.add_argument("--drain", type=float, default=2.0, help="wait for the last frames after a step, seconds")
    parser.add_argument("--servers", type=lambda text: text.split(","),
                        default=["server", "single", "reference", "no_coalescing", "floor"],
                        help=f"local variants to measure, comma separated, from {sorted(KINDS)}")
    parser.add_argument("--pace", choices=sorted(PACES), default="digits",
                        help="digits: real digits with pauses between strokes and digits; continuous: a stroke "
                             "message every 1/60 s with 4 points, no pauses")
    parser.add_argument("--url", help="measure this running deployment (ws://…/ws) instead of local servers")
    parser.add_argument("--origin", help="Origin header for --url (default: the URL's own http origin)")
    parser.add_argument("--model", default=None, help="model the local servers serve (default: the store's)")
    parser.add_argument("--processes", type=int, default=2, help="client processes generating the load")
    parser.add_argument("--digits", type=int, default=20, help="distinct real digits the visitors draw")
    parser.add_argument("--stop-above-ms", type=float, default=1000.0,
                        help="skip larger N for a variant once its p99 exceeds this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object with every figure")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--plot", type=Path, help="write a PNG plot of latency percentiles against N here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.duration <= 0 or args.drain < 0 or args.processes < 1 or args.digits < 1:
        parser().error("--duration must be > 0, --drain >= 0, --processes and --digits >= 1")
    report = run(args)
    if args.plot:
        plot(report, args.plot)
        report["plot"] = str(args.plot)
    if args.json:
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    elif args.markdown:
        print(format_markdown(report))
    else:
        print(format_table(report))


if __name__ == "__main__":
    main()
