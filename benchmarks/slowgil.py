"""Why a slow-lane job slows a drawing visitor of its process: the GIL, isolated from the server (issue 29.1).

``python -m benchmarks.slowgil [--isolation thread,process] [--nice 10] [--seconds 6] [--rounds 2]``
runs, in the calling process, a *frame probe*: every 1/60 s (a drawing
visitor's pace) it wakes up, does a frame's worth of small numpy calls (each a
GIL hand-over) and records how late it finished, in ms.  It measures that
lateness alone and beside KernelSHAP sanity checks (three KernelSHAP maps and a
deletion curve each, the costliest slow-lane request) run back to back at
niceness ``--nice``, in alternating windows:

* ``thread``: in a thread of this process, as the server's slow lane runs
  them: it shares the probe's GIL;
* ``process``: in a child process: it shares only the cores.

On a loaded machine a thread that holds the GIL is often preempted while
holding it, and the probe then waits for the kernel to run that thread again;
a child process holds no lock the probe needs.  Run it beside a load (e.g.
four ``python3 -c 'while True: pass'``) to see the difference.
"""

import argparse
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event as ProcessEvent

import numpy as np
import orjson
import torch

from model_store import load_model
from model_store.strokes import load_golden_digits
from server.explain.engine import Engine, Request, Selection
from server.inference.budget import GIL_SWITCH_INTERVAL_S
from server.raster import rasterize

FRAME_INTERVAL_S = 1 / 60
NUMPY_CALLS = 20  # a frame's GIL hand-overs, about: receive, raster, engine call, encode, send


Flag = threading.Event | ProcessEvent


def sanity_loop(nice: int, ready: Flag, stop: Flag) -> None:
    """KernelSHAP sanity checks of a golden 3 at niceness ``nice`` (this thread) from ``ready`` until ``stop``."""
    torch.set_num_threads(1)
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    engine = Engine(load_model("default"))
    request = Request(rasterize(load_golden_digits()[3]), Selection(3, None), method="kernel_shap")
    engine.sanity(request)
    ready.set()
    while not stop.is_set():
        engine.sanity(request)


def in_child(nice: int, ready: ProcessEvent, stop: ProcessEvent) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    sanity_loop(nice, ready, stop)


def probe(seconds: float) -> list[float]:
    """How late each frame of ``seconds`` of a 60 Hz frame loop finished, ms."""
    late, vector = [], np.random.default_rng(0).random(784, dtype=np.float32)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.monotonic()
        time.sleep(FRAME_INTERVAL_S)
        for _ in range(NUMPY_CALLS):
            vector = np.tanh(vector)
        late.append((time.monotonic() - started - FRAME_INTERVAL_S) * 1e3)
    return late


def beside(isolation: str, nice: int, seconds: float) -> list[float]:
    """The probe beside sanity checks run in a ``thread`` or a ``process``."""
    if isolation == "thread":
        ready: Flag = threading.Event()
        stop: Flag = threading.Event()
        worker: threading.Thread | multiprocessing.Process = threading.Thread(target=sanity_loop,
                                                                             args=(nice, ready, stop))
    else:
        context = multiprocessing.get_context("spawn")
        ready, stop = context.Event(), context.Event()
        worker = context.Process(target=in_child, args=(nice, ready, stop))
    worker.start()
    ready.wait()  # imports done, engine built, one check run: from now on it computes back to back
    late = probe(seconds)
    stop.set()
    worker.join()
    return late


def percentiles(late: Sequence[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(late, 50)), 2), "p99_ms": round(float(np.percentile(late, 99)), 2)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slowgil", description=__doc__.split("\n\n")[0])
    parser.add_argument("--isolation", default="thread,process", help="comma separated: thread, process")
    parser.add_argument("--nice", type=int, default=10, help="the sanity checks' niceness (the slow lane's: 10)")
    parser.add_argument("--seconds", type=float, default=6.0, help="each measuring window")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of alone and beside")
    args = parser.parse_args(argv)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as a server process
    torch.set_num_threads(1)
    report: dict[str, dict] = {}
    for isolation in args.isolation.split(","):
        alone: list[float] = []
        near: list[float] = []
        for _ in range(args.rounds):
            alone += probe(args.seconds)
            near += beside(isolation, args.nice, args.seconds)
        report[isolation] = {"alone": percentiles(alone), "beside": percentiles(near),
                             "p99_ratio": round(float(np.percentile(near, 99) / np.percentile(alone, 99)), 2)}
    print(orjson.dumps({"nice": args.nice, "load_average": os.getloadavg()[0], "isolation": report},
                       option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
