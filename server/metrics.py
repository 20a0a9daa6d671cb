"""Prometheus metrics of one app, in a registry of its own (several apps may share a process).

In a replica of several server processes (:mod:`server.replica`), the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before they start: every
process then writes its samples to memory-mapped files there, and
``/metrics``, answered by any of them, sums them over the replica
(prometheus_client's multiprocess mode; the open-connections gauge counts
live processes only).  The ``process_*`` series are left out then: they
would describe whichever process answered.
"""

import os
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from .replica import METRICS_DIR_ENV

# Stroke → frame latency and inference time, seconds: display-rate territory (1 ms … 1 s).
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


@dataclass(frozen=True)
class Metrics:
    """Every metric the server exports; names are ``xai_*`` in ``/metrics``."""

    registry: CollectorRegistry
    open_connections: Gauge
    frames_sent: Counter
    frames_coalesced: Counter
    batch_size: Histogram
    inference_seconds: Histogram
    stroke_to_frame_seconds: Histogram
    event_loop_lag_seconds: Histogram
    rejected_connections: Counter
    rejected_messages: Counter
    closed_connections: Counter

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)


def create_metrics() -> Metrics:
    """A fresh registry holding every metric, all at zero, plus the standard ``process_*`` and
    ``python_info`` series (CPU seconds, resident memory: what the latency benchmark reads from a URL)."""
    exposition = CollectorRegistry()
    if os.environ.get(METRICS_DIR_ENV):
        multiprocess.MultiProcessCollector(exposition)  # type: ignore[no-untyped-call]  # not annotated upstream
        registry = CollectorRegistry()  # the samples live in the shared files; this only names the metrics
    else:
        ProcessCollector(registry=exposition)
        PlatformCollector(registry=exposition)
        registry = exposition
    return Metrics(
        registry=exposition,
        open_connections=Gauge("xai_open_connections", "Open visitor WebSockets.", registry=registry,
                               multiprocess_mode="livesum"),
        frames_sent=Counter("xai_frames_sent", "Frames sent to visitors.", registry=registry),
        frames_coalesced=Counter(
            "xai_frames_coalesced",
            "Input messages folded into a later frame instead of getting their own (latest-wins).",
            registry=registry),
        batch_size=Histogram("xai_inference_batch_size", "Frames computed per engine call.",
                             buckets=BATCH_BUCKETS, registry=registry),
        inference_seconds=Histogram("xai_inference_seconds", "Wall time of one engine call (a batch).",
                                    buckets=LATENCY_BUCKETS_S, registry=registry),
        stroke_to_frame_seconds=Histogram(
            "xai_stroke_to_frame_seconds",
            "From receiving the oldest input a frame reflects to sending that frame.",
            buckets=LATENCY_BUCKETS_S, registry=registry),
        event_loop_lag_seconds=Histogram("xai_event_loop_lag_seconds",
                                          "How late a periodic event-loop timer fired.",
                                          buckets=LATENCY_BUCKETS_S, registry=registry),
        rejected_connections=Counter("xai_rejected_connections", "WebSockets refused, by reason.",
                                     ["reason"], registry=registry),
        rejected_messages=Counter("xai_rejected_messages", "Client messages refused, by error code.",
                                  ["reason"], registry=registry),
        closed_connections=Counter("xai_closed_connections", "Visitor WebSockets ended, by close code.",
                                   ["code"], registry=registry),
    )
