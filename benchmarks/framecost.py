"""Per-frame CPU cost: what one live frame costs the server, part by part, without I/O.

``python -m benchmarks.framecost [--json] [--visitors N] [--batch B] [--profile] [--baseline REV]``
replays ``--visitors`` visitors drawing continuously (the latency benchmark's
``--pace continuous``: a ``stroke`` message of 4 points every 1/60 s), every
message answered by a frame, through the server's own code in one thread:

* **protocol**: ``decode_message`` + ``VisitorState.apply`` + ``view`` of each
  message (what the event loop does with it, minus the WebSocket);
* **engine thread**: ``EngineThreads.run`` on batches of ``--batch`` frames
  of different visitors (each with its own raster cache), each frame's
  message encoded (``FrameRenderer``): raster, engine call, encoding.

It reports CPU time (``time.thread_time``) per frame, the median of
``--repeats`` replays, and with ``--profile`` a cProfile breakdown by part
(protocol, raster, engine call, encoding, the rest; cProfile's own overhead
inflates the many small calls, so read the shares, not absolute times), so that a change to the frame
path can be measured at two commits side by side without a loaded machine's
noise.  ``--baseline REV`` does that in one run: it extracts commit ``REV`` of this repository
(``git archive``) into a temporary directory and runs that commit's own framecost there, in a child
process, alternately with this code's replays, and reports both and their ratio.  Event-loop
scheduling, the WebSocket and the hand-off between loop and threads are not in it:
:mod:`benchmarks.latency` measures the whole.
"""

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import torch

from server.catalog import Catalog
from server.inference.jobs import EngineThreads, Job, default_engine_factory
from server.protocol import Limits, View, VisitorState, decode_message
from server.raster import RasterCache
from server.scheduling import FrameTicket
from server.session import FrameRenderer, Session
from server.settings import Settings

from .workload import Pace, load_drawings, visitor_schedule

# The parts of a frame by the functions that enter them: (file, function) → part.  A part's time is the
# cumulative time of its entry points (nothing of one part calls another's).
PARTS = {("server/protocol.py", "decode_message"): "protocol", ("server/protocol.py", "apply"): "protocol",
         ("server/protocol.py", "view"): "protocol", ("server/raster.py", "rasterize"): "raster",
         ("server/explain/engine.py", "explain"): "engine", ("server/frames.py", "encode_frame"): "encoding"}


@dataclass(frozen=True)
class Cost:
    """CPU time per frame, µs."""

    protocol_us: float
    engine_thread_us: float
    total_us: float
    frames: int


def messages(visitors: int, frames_each: int) -> list[list[bytes]]:
    """Each visitor's first ``frames_each`` messages of the continuous pace, as the page sends them."""
    drawings, _ = load_drawings(20)
    streams = []
    for visitor in range(visitors):
        schedule = visitor_schedule(drawings, Pace.continuous(), seed=visitor)
        stroke_id, texts = 0, []
        for seq, event in enumerate(schedule.events[:frames_each], start=1):
            message = dict(event.message, seq=seq)
            if message["type"] == "stroke":
                stroke_id += event.new_stroke
                message["id"] = stroke_id
            texts.append(orjson.dumps(message))
        streams.append(texts)
    return streams


def replay(catalog: Catalog, threads: EngineThreads, streams: Sequence[Sequence[bytes]], batch: int,
           model: str = "") -> Cost:
    """Every message of ``streams`` applied and answered by a frame on ``model`` (the default if empty);
    CPU time per frame."""
    limits = Limits(Settings().max_points_per_message, Settings().max_points, Settings().max_strokes)
    states = [VisitorState(catalog.options(), limits, model=model) for _ in streams]
    caches = [RasterCache() for _ in streams]
    protocol_s = engine_s = 0.0
    frames = 0
    for step in range(max(map(len, streams))):
        started = time.thread_time()
        views: list[tuple[int, View]] = []
        for visitor, stream in enumerate(streams):
            if step < len(stream):
                states[visitor].apply(decode_message(stream[step].decode()))
                views.append((visitor, states[visitor].view()))
        protocol_s += time.thread_time() - started
        started = time.thread_time()
        for start in range(0, len(views), batch):
            jobs = [Job(view.model, view.strokes, (Session._spec(view, pending=False),),
                        render=FrameRenderer(view, FrameTicket(frames + index, False, 1, None)),
                        owner=visitor, raster=caches[visitor])
                    for index, (visitor, view) in enumerate(views[start:start + batch])]
            threads.run(jobs)
            frames += len(jobs)
        engine_s += time.thread_time() - started
    return Cost(round(protocol_s / frames * 1e6, 1), round(engine_s / frames * 1e6, 1),
                round((protocol_s + engine_s) / frames * 1e6, 1), frames)


def breakdown(profile: cProfile.Profile) -> dict[str, float]:
    """Share of the profiled time per part of :data:`PARTS`; ``rest``: everything else (job and batch
    glue, the replay's own loop)."""
    stats = pstats.Stats(profile)
    shares = dict.fromkeys([*dict.fromkeys(PARTS.values()), "rest"], 0.0)
    for (filename, _, name), (_, _, _, cumulative_s, _) in stats.stats.items():  # type: ignore[attr-defined]
        part = next((part for (where, function), part in PARTS.items()
                     if filename.endswith(where) and name == function), None)
        if part is not None:
            shares[part] += cumulative_s
    total = stats.total_tt  # type: ignore[attr-defined]
    shares["rest"] = max(0.0, total - sum(shares.values()))
    return {part: round(100 * seconds / total, 1) for part, seconds in shares.items()}


REPOSITORY = Path(__file__).resolve().parent.parent


def extract(revision: str, into: Path) -> Path:
    """Commit ``revision`` of this repository's code, extracted into ``into`` (``git archive``: no worktree to
    clean up, nothing of the checkout touched)."""
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", "--format=tar", revision],
                             capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"framecost: cannot extract revision {revision!r} of {REPOSITORY} (a git checkout is "
                         f"needed): {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def baseline_cost(checkout: Path, args: argparse.Namespace) -> dict:
    """One replay of that checkout's own framecost (its median of one repeat), as its ``--json`` reports it."""
    command = [sys.executable, "-m", "benchmarks.framecost", "--json", "--repeats", "1", "--visitors",
               str(args.visitors), "--frames", str(args.frames), "--batch", str(args.batch)]
    report: dict = json.loads(subprocess.run(command, cwd=checkout, check=True, capture_output=True,
                                             text=True).stdout)
    return report["median"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.framecost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--visitors", type=int, default=50)
    parser.add_argument("--frames", type=int, default=120, help="frames per visitor (2 s of drawing)")
    parser.add_argument("--batch", type=int, default=16, help="frames per engine call (the server's BATCH_MAX)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also a cProfile breakdown by part (slower)")
    parser.add_argument("--models", default="",
                        help="comma-separated models, each replayed in the same run (default: the default model); "
                             "with two, the ratio of the second's frame to the first's")
    parser.add_argument("--baseline", metavar="REV",
                        help="also replay commit REV's code (its own framecost, in a child process), alternately "
                             "with this code's repeats, and report this code's frame over it (the first model only)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from server.lifespan import load_store  # the app module pulls in Starlette: only when run

    catalog, models = load_store(Settings())
    threads = EngineThreads(models, "fast", default_engine_factory)
    threads.warm()
    streams = messages(args.visitors, args.frames)
    models = [name for name in args.models.split(",") if name] or [catalog.default_model]
    report: dict = {"visitors": args.visitors, "batch": args.batch}
    with tempfile.TemporaryDirectory(prefix="framecost-") as scratch:
        checkout = extract(args.baseline, Path(scratch)) if args.baseline else None
        for index, model in enumerate(models):
            baselines: list[dict] = []
            costs = []
            for _ in range(args.repeats):
                if checkout is not None and index == 0:  # interleaved, so that a change of load hits both
                    baselines.append(baseline_cost(checkout, args))
                costs.append(replay(catalog, threads, streams, args.batch, model))
            costs.sort(key=lambda cost: cost.total_us)
            medians = {"median": asdict(costs[len(costs) // 2]), "best": asdict(costs[0])}
            if baselines:
                baselines.sort(key=lambda cost: cost["total_us"])
                report["baseline"] = {"revision": args.baseline, "median": baselines[len(baselines) // 2],
                                      "best": baselines[0]}
                report["over_baseline"] = round(medians["median"]["total_us"] / report["baseline"]["median"]
                                                ["total_us"], 3)
            if len(models) == 1:
                report.update(medians)  # the layout a single model has always had
            else:
                report[model] = medians
    if len(models) == 2:
        first, second = (report[model]["median"]["total_us"] for model in models)
        report[f"{models[1]}_over_{models[0]}"] = round(second / first, 2)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(replay, catalog, threads, streams, args.batch)
        report["profile_percent"] = breakdown(profile)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
