"""The wire layout of every server → client message (docs/protocol.md), written once.

Each ``encode_*`` function returns the UTF-8 JSON text of one message as
``bytes`` (orjson).  Arrays travel as ``{"dtype", "shape", "scale"?, "data"}``
with standard base64 data (RFC 4648 §4), whatever their size: in a frame the
images and the H-vectors (activations, relevances, edges) quantised to one
byte per value with a scale, so that a frame of the 128-neuron model stays
under 4,000 bytes (60 of them a second fit a 2 Mbit/s link); the 10 class
probabilities and logits are plain JSON numbers.
"""

import base64
from typing import Any

import numpy as np
import orjson

from .catalog import Catalog
from .photo import MAX_SIDE_PX
from .protocol import MAX_COMPARE_METHODS, PROTOCOL_VERSION, ErrorCode, Limits, View

U8_SCALE = 1.0 / 255.0
I8_MAX = 127
U4_MAX = 15
TILE_PX = 6  # a feature-map tile's side in a frame: conv1's 12 × 12 maps are max-pooled by 2 to fit 4,000 bytes
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _base64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values).tobytes()).decode("ascii")


def _quantised(values: np.ndarray, scale: float, dtype: type[np.generic]) -> np.ndarray:
    """``round(v / scale)`` as ``dtype`` (all zeros for scale 0), for a ``scale`` that maps every value into
    ``dtype``'s range: ``max|v| / n`` rounds to at most ``n``.

    A frame quantises five arrays: these are the three array calls it takes (numpy's ``clip`` wrapper, which
    a scale from the values makes needless, cost more than the arithmetic).
    """
    if scale == 0.0:
        return np.zeros(values.shape, dtype=dtype)
    scaled = values / scale  # in the values' own precision, as the protocol's round(v / scale) always was
    return np.rint(scaled, out=scaled).astype(dtype)


def encode_u8(image: np.ndarray) -> dict[str, Any]:
    """Values in [0, 1] as bytes ``round(v·255)``: exact to within 1/510."""
    scaled = image * 255.0
    quantised = np.clip(np.rint(scaled, out=scaled), 0, 255, out=scaled).astype(np.uint8)
    return {"dtype": "u8", "shape": list(image.shape), "scale": U8_SCALE, "data": _base64(quantised)}


def encode_u8_scaled(values: np.ndarray) -> dict[str, Any]:
    """Non-negative values as ``round(v / scale)`` with ``scale = max(v) / 255``: exact to within ``scale / 2``.

    An all-zero (or empty) array has ``scale`` 0 and all bytes 0.
    """
    largest = float(values.max()) if values.size else 0.0
    scale = largest / 255.0
    quantised = _quantised(values, scale, np.uint8)
    return {"dtype": "u8", "shape": list(values.shape), "scale": scale, "data": _base64(quantised)}


def encode_u4_scaled(values: np.ndarray) -> dict[str, Any]:
    """Non-negative values as 4-bit ``round(v / scale)``, ``scale = max(v) / 15``, two per byte (the first in
    the high nibble; an odd count pads the last low nibble with 0): a display quantity at half a byte."""
    largest = float(values.max()) if values.size else 0.0
    scale = largest / U4_MAX
    quantised = np.zeros(values.size + values.size % 2, dtype=np.uint8)
    if scale > 0.0:
        quantised[:values.size] = np.clip(np.rint(values.ravel() / scale), 0, U4_MAX)
    packed = (quantised[0::2] << 4) | quantised[1::2]
    return {"dtype": "u4", "shape": list(values.shape), "scale": scale, "data": _base64(packed)}


def encode_i8(values: np.ndarray) -> dict[str, Any]:
    """Signed values as ``round(v / scale)`` with ``scale = max|v| / 127``: exact to within ``scale / 2``.

    An all-zero (or empty) array has ``scale`` 0 and all bytes 0.
    """
    largest = max(float(values.max()), -float(values.min())) if values.size else 0.0
    scale = largest / I8_MAX
    quantised = _quantised(values, scale, np.int8)
    return {"dtype": "i8", "shape": list(values.shape), "scale": scale, "data": _base64(quantised)}


def encode_f32(values: np.ndarray) -> dict[str, Any]:
    """Float32 little-endian (IEEE 754), no scale."""
    return {"dtype": "f32", "shape": list(values.shape), "data": _base64(values.astype("<f4"))}


def _floats(values: np.ndarray) -> np.ndarray:
    """A contiguous float32 vector, which orjson writes as the shortest float32 decimals."""
    return np.ascontiguousarray(values, dtype=np.float32)


def _dumps(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=_OPTIONS)


def encode_welcome(catalog: Catalog, view: View, limits: Limits, timing: dict[str, float]) -> bytes:
    """The ``welcome`` message for a visitor in state ``view``.

    ``timing``: the limits that are settings of the I/O layer
    (``max_message_bytes``, ``max_frames_per_s``, ``idle_timeout_s``, ``ping_interval_s``, ``pause_ms``).
    """
    model = catalog.models[view.model]
    return _dumps({
        "type": "welcome",
        "protocol": PROTOCOL_VERSION,
        "model": {"name": model.name, "layers": list(model.layers), "hidden": model.hidden,
                  "test_accuracy": model.test_accuracy, "family": model.family, "units": list(model.units)},
        "models": [{"name": info.name, "hidden": info.hidden, "test_accuracy": info.test_accuracy,
                    "family": info.family, "methods": list(info.methods), "rules": list(info.rules)}
                   for info in catalog.models.values()],
        # What the visitor's model can run: a method or rule of another family is never offered.
        "methods": [{"name": name, "label": catalog.methods[name].label, "cost": catalog.methods[name].cost,
                     "signed": catalog.methods[name].signed, "control": catalog.methods[name].control,
                     "description": catalog.methods[name].description}
                    for name in model.methods],
        "rules": [{"name": name, "label": catalog.rules[name].label, "description": catalog.rules[name].description}
                  for name in model.rules],
        "state": {"model": view.model, "method": view.method, "rule": view.rule,
                  "output": view.output, "hidden": view.hidden, "versus": view.versus,
                  "knockout": list(view.knockout), "layer": view.layer},
        "limits": {"max_message_bytes": timing["max_message_bytes"],
                   "max_points_per_message": limits.max_points_per_message,
                   "max_points": limits.max_points, "max_strokes": limits.max_strokes,
                   "max_frames_per_s": timing["max_frames_per_s"], "idle_timeout_s": timing["idle_timeout_s"],
                   "ping_interval_s": timing["ping_interval_s"], "pause_ms": timing["pause_ms"],
                   "max_compare_methods": MAX_COMPARE_METHODS, "max_photo_side_px": MAX_SIDE_PX},
    })


def encode_frame(view: View, image: np.ndarray, data: Any, pending: bool, number: int, compute_ms: float) -> bytes:
    """The ``frame`` message.

    Parameters
    ----------
    view:
        The visitor state the frame was computed from (``seq``, selection, configuration).
    image:
        ``(28, 28)`` float32 model input in [0, 1].
    data:
        The engine's ``FrameData`` for the request.
    pending:
        ``True`` while an on-pause method waits for stillness: the heatmap is sent as ``null``.
    number:
        The frame's number on its connection (1, 2, …), what the client acknowledges.
    compute_ms:
        Server time spent on this frame, milliseconds.
    """
    conservation = data.conservation
    edges = None if data.channels else encode_i8(np.asarray(data.edges)[:, int(data.target)])
    # In modes lrp, crp and hidden a neuron's relevance is its edge to the target: the same bytes, encoded once.
    hidden_relevance = None if data.channels else edges if data.mode in ("lrp", "crp", "hidden") else \
        encode_i8(np.asarray(data.hidden_relevance))
    return _dumps({
        "type": "frame",
        "frame": number,
        "seq": view.seq,
        "model": view.model, "method": view.method, "rule": view.rule,
        "output": view.output, "hidden": view.hidden, "layer": view.layer,
        "versus": view.versus, "knockout": list(view.knockout),
        "knockout_effect": _knockout_effect(data.knockout),
        "target": int(data.target), "mode": data.mode,
        "prediction": int(data.prediction),
        "probabilities": _floats(data.probabilities),
        "logits": _floats(data.logits),
        # A cnn's diagram draws its channels, not fc1's units: their bytes go to the channels' tiles.
        "activations": None if data.channels else encode_u8_scaled(np.asarray(data.activations)),
        "hidden_relevance": hidden_relevance,
        "edges": edges,
        "input": encode_u8(image),
        "heatmap": None if pending else encode_i8(np.asarray(data.heatmap)),
        "conservation": {key: float(conservation[key]) for key in ("input_sum", "hidden_sum", "logit")},
        "class_max_abs": _optional_float(data.class_max_abs),
        "neuron_share": _optional_float(data.neuron_share),
        "neuron_silent": data.neuron_silent,
        "pending": pending,
        "channels": _channels(data.channels),
        "feeds": None if data.feeds is None else {"layer": data.feeds[0], "relevance": encode_i8(data.feeds[1])},
        "compute_ms": round(compute_ms, 3),
    })


def _channels(channels: Any) -> dict[str, Any] | None:
    """A cnn's conv layers: each channel's feature-map tile (:func:`tiles`, 4 bits a value) and relevance;
    ``None`` for an MLP."""
    if channels is None:
        return None
    return {layer: {"activations": encode_u4_scaled(tiles(np.asarray(data.activations))),
                    "relevance": encode_i8(np.asarray(data.relevance))} for layer, data in channels.items()}


def tiles(maps: np.ndarray) -> np.ndarray:
    """``(C, h, w)`` feature maps max-pooled to at most :data:`TILE_PX` on a side (by a whole factor)."""
    factor = max(1, -(-maps.shape[-1] // TILE_PX))
    channels, height, width = maps.shape
    pooled: np.ndarray = maps.reshape(channels, height // factor, factor, width // factor, factor).max(axis=(2, 4))
    return pooled


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _rounded(value: float | None) -> float | None:
    """A ρ to 4 decimals; ``None`` (undefined) stays ``null``, never 0."""
    return None if value is None else round(value, 4)


def encode_sanity(view: View, data: Any, report: Any, compute_ms: float) -> bytes:
    """The ``sanity`` message: ``report`` (``server.explain.sanity.Sanity``) of the map of ``data`` (``FrameData``)."""
    return _dumps({
        "type": "sanity",
        "seq": view.seq,
        "model": view.model, "method": view.method, "rule": view.rule,
        "output": view.output, "hidden": view.hidden,
        "target": int(data.target), "mode": data.mode,
        "heatmap": encode_i8(np.asarray(data.heatmap)),
        "randomized": [{"layers": item.layers, "heatmap": encode_i8(item.heatmap),
                        "rank_correlation": _rounded(item.rank_correlation),
                        "correlations": [_rounded(rho) for rho in item.correlations],
                        "band": None if item.band is None else dict(zip(("low", "median", "high"),
                                                                        (round(v, 4) for v in item.band))),
                        "passes": item.passes, "counts": item.counts}
                       for item in report.randomized],
        "deletion": {"pixels_per_step": report.deletion.pixels_per_step,
                     "curve": _floats(report.deletion.curve), "least": _floats(report.deletion.least),
                     "random": [_floats(curve) for curve in report.deletion.random],
                     "aopc": round(report.deletion.aopc, 4), "least_aopc": round(report.deletion.least_aopc, 4),
                     "random_aopc": dict(zip(("low", "median", "high"),
                                             (round(v, 4) for v in report.deletion.random_band))),
                     "insertion": _floats(report.deletion.insertion),
                     "insertion_aopc": round(report.deletion.insertion_aopc, 4)},
        "same_ranking": report.same_ranking,
        "passes": {"randomization": report.passes_randomization, "deletion": report.passes_deletion},
        "empty": report.empty,
        "verdict": report.verdict,
        "compute_ms": round(compute_ms, 3),
    })


def encode_concepts(view: View, layer: str, frames: list[Any], compute_ms: float) -> bytes:
    """The ``concepts`` message: each channel ``k`` of ``layer``'s CRP map (``frames[k]``, ``FrameData``) on
    one shared scale, and each channel's relevance for the class."""
    target = int(frames[0].target)
    return _dumps({
        "type": "concepts",
        "seq": view.seq,
        "model": view.model, "rule": view.rule, "layer": layer, "target": target,
        "maps": encode_i8(np.stack([np.asarray(frame.heatmap) for frame in frames])),
        "relevance": encode_i8(np.asarray(frames[0].channels[layer].relevance)),
        "compute_ms": round(compute_ms, 3),
    })


def encode_comparison(view: View, target: int, maps: list[tuple[str, Any, float]], catalog: Catalog) -> bytes:
    """The ``comparison`` message: one heatmap per ``(method, FrameData, compute_ms)``."""
    return _dumps({
        "type": "comparison",
        "seq": view.seq,
        "target": target,
        "maps": [{"method": method, "label": catalog.methods[method].label, "cost": catalog.methods[method].cost,
                  "signed": catalog.methods[method].signed, "control": catalog.methods[method].control,
                  "compute_ms": round(compute_ms, 3), "heatmap": encode_i8(np.asarray(data.heatmap))}
                 for method, data, compute_ms in maps],
    })


def _knockout_effect(effect: Any) -> dict[str, Any] | None:
    """A frame's ``knockout_effect``: ``None``, or what the knock-out changed (docs/protocol.md, "Knock-out")."""
    if effect is None:
        return None
    return {"prediction": effect.prediction, "probabilities": _floats(effect.probabilities),
            "units": [{"unit": unit.unit, "share": round(unit.share, 6),
                       "delta_probability": round(unit.delta_probability, 6)} for unit in effect.units]}


def encode_counterfactual(view: View, found: Any) -> bytes:
    """The ``counterfactual`` message: ``found`` is a ``server.explain.counterfactual.Counterfactual``
    for the drawing of ``view`` (``seq``: the request's)."""
    return _dumps({
        "type": "counterfactual",
        "seq": view.seq,
        "model": view.model,
        "target": int(found.target),
        "image": encode_u8(found.image),
        "probability": float(found.probability),
        "changed_ink": round(float(found.changed_ink), 6),
        "plausible": bool(found.plausible),
        "agreeing_neighbours": int(found.agreeing),
        "compute_ms": round(float(found.compute_ms), 3),
    })


def encode_error(code: ErrorCode, message: str, seq: int | None) -> bytes:
    """The ``error`` message for a refused client message."""
    return _dumps({"type": "error", "seq": seq, "code": str(code), "message": message})
