"""The model and neuron API: ``/api/models``, ``/api/models/{name}/neurons/{j}`` (a neuron's card), its weights,
and a cnn channel's reference samples ``/api/models/{name}/concepts/{layer}/{k}``."""

import asyncio
from typing import Any

import numpy as np
from starlette import status
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from model_store.architecture import linear_layer
from model_store.references import References
from model_store.sizes import IMAGE_PX

from . import neurons
from .frames import encode_i8, encode_u8
from .inference.jobs import InferenceError
from .runtime import Runtime, engines_of, runtime_of, services_of


async def api_models(request: Request) -> Response:
    services = services_of(runtime_of(request))
    catalog = services.catalog
    return JSONResponse({
        "default": services.settings.model or catalog.default_model,
        "models": [{"name": info.name, "hidden": info.hidden, "layers": list(info.layers),
                    "val_accuracy": info.val_accuracy, "test_accuracy": info.test_accuracy, "sha256": info.sha256}
                   for info in catalog.models.values()],
    })


async def api_neuron(request: Request) -> Response:
    runtime = runtime_of(request)
    name, text = request.path_params["name"], request.path_params["neuron"]
    models = services_of(runtime).catalog.models
    neuron = parse_index(text, models[name].hidden) if name in models else None
    if neuron is None:
        return JSONResponse({"error": f"no hidden neuron {text[:12]!r} in model {name[:40]!r}"},
                            status_code=status.HTTP_404_NOT_FOUND)
    if models[name].family != "mlp":
        return not_pixel_weights(name)
    try:
        scan = await neuron_scan(runtime, name)
    except InferenceError as error:  # a deadline passed, or no engine thread is left: try again later
        return JSONResponse({"error": f"the neuron card could not be computed ({error.error_type})"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    images, labels = runtime.digits.get()
    activating, relevant = neurons.card_digits(scan, neuron)
    try:
        maps = await services_of(runtime).batcher.call(_maps_on_thread, runtime, name, neuron,
                                                       images[activating + relevant])
    except InferenceError as error:
        return JSONResponse({"error": f"the neuron card could not be computed ({error.error_type})"},
                            status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return JSONResponse(neurons.card(name, neuron, scan, images, labels, maps))


def _maps_on_thread(runtime: Runtime, model: str, neuron: int, images: np.ndarray) -> np.ndarray:
    return neurons.reference_maps(engines_of(runtime).engine(model), images, neuron)


def not_pixel_weights(name: str) -> Response:
    """404 for a neuron card or weight templates of a cnn: its fc1 reads feature maps, not pixels."""
    return JSONResponse({"error": f"model {name!r} is a cnn: its fc1 units read feature maps, not pixels; "
                         f"their reference samples are at /api/models/{name}/concepts/fc1/{{j}}"},
                        status_code=status.HTTP_404_NOT_FOUND)


def parse_index(text: str, size: int) -> int | None:
    """``text`` as an index in ``0..size-1`` (ASCII digits only), else ``None``.

    The length is checked before converting, so no client string reaches
    ``int()`` with more digits than ``size`` has.
    """
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(size)):
        return None
    index = int(text)
    return index if index < size else None


async def api_weights(request: Request) -> Response:
    """Every hidden neuron's weight template ``W1[j]`` at once, for the page's diagram (docs/protocol.md)."""
    runtime = runtime_of(request)
    name = request.path_params["name"]
    models = services_of(runtime).catalog.models
    if name not in models:
        return JSONResponse({"error": f"no model {name[:40]!r}"}, status_code=status.HTTP_404_NOT_FOUND)
    if models[name].family != "mlp":
        return not_pixel_weights(name)
    first_layer = linear_layer(engines_of(runtime).models[name], "fc1")
    weights = first_layer.weight.detach().numpy()
    return JSONResponse({"model": name, "weights": encode_i8(weights.reshape(-1, IMAGE_PX, IMAGE_PX))})


async def neuron_scan(runtime: Runtime, model: str) -> neurons.NeuronScan:
    """The cached scan of ``model``; the first request starts it on an engine thread, others await it.

    A scan that failed is started again by the next request rather than cached.
    """
    scan = runtime.scans.get(model)
    if scan is None or (scan.done() and (scan.cancelled() or scan.exception() is not None)):
        scan = asyncio.create_task(_scan(runtime, model))
        runtime.scans[model] = scan
    return await asyncio.shield(scan)  # a visitor hanging up must not cancel the scan others wait for


async def _scan(runtime: Runtime, model: str) -> neurons.NeuronScan:
    """Scan the digits chunk by chunk on engine threads, each chunk one call within the compute deadline."""
    batcher = services_of(runtime).batcher
    images, _ = await batcher.call(runtime.digits.get)  # the first load reads a file (~0.3 s)
    parts = [await batcher.call(_scan_chunk_on_thread, runtime, model, chunk) for chunk in neurons.scan_chunks(images)]
    first_layer = linear_layer(engines_of(runtime).models[model], "fc1")
    return neurons.scan(parts, first_layer.weight.detach().numpy())


def _scan_chunk_on_thread(runtime: Runtime, model: str, images: np.ndarray) -> neurons.ScanPart:
    return neurons.scan_chunk(engines_of(runtime).engine(model), images)


async def api_concept(request: Request) -> Response:
    """A channel's (or ``fc1`` unit's) reference samples: RelMax and ActMax (docs/protocol.md)."""
    runtime = runtime_of(request)
    name, layer, text = (request.path_params[key] for key in ("name", "layer", "channel"))
    layers = runtime.references.get(name, {})
    kinds = layers.get(layer)
    channel = parse_index(text, len(kinds["relevance"].index)) if kinds is not None else None
    if kinds is None or channel is None:
        return JSONResponse({"error": f"no concept {text[:12]!r} of layer {layer[:12]!r} in model {name[:40]!r}"},
                            status_code=status.HTTP_404_NOT_FOUND)
    return JSONResponse({"model": name, "layer": layer, "channel": channel,
                         "relmax": reference_samples(kinds["relevance"], channel),
                         "actmax": reference_samples(kinds["activation"], channel)})


def reference_samples(samples: References, channel: int) -> dict[str, Any]:
    """One channel's samples, best first: digit indices, scores, receptive-field boxes, patches, heatmaps."""
    return {"index": samples.index[channel].tolist(), "score": samples.score[channel].tolist(),
            "box": samples.box[channel].tolist(), "patch": encode_u8(samples.patch[channel]),
            "heatmap": encode_i8(samples.heatmap[channel])}
