"""The HTTP routes: health, readiness, metrics, the model list and neuron cards."""

import asyncio
import gc
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import orjson
import pytest
import safetensors.torch
import torch
from starlette import status as http_status
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

import server.lifespan
from model_store import load_model, model_names, model_record
from model_store.datasets import load_embedded
from model_store.manifest import STORE_DIR, sha256_of
from server.explain.engine import Engine, Request, Selection
from support import decode_array, fetch, metric, running_app, ws_url


async def test_health_readiness_and_metrics(app_url: str) -> None:
    assert await fetch(app_url + "/healthz") == (200, b"ok")
    status, body = await fetch(app_url + "/readyz")
    assert status == 200 and b"golden digits" in body
    status, body = await fetch(app_url + "/metrics")
    assert status == 200
    for name in (b"xai_open_connections", b"xai_frames_sent_total", b"xai_frames_coalesced_total",
                 b"xai_inference_batch_size", b"xai_stroke_to_frame_seconds", b"xai_event_loop_lag_seconds",
                 b"xai_rejected_connections_total", b"xai_rejected_messages_total"):
        assert name in body


async def test_page_is_served(app_url: str) -> None:
    status, body = await fetch(app_url + "/")
    assert status == 200 and body.lower().startswith(b"<!doctype html")


async def test_models_api_lists_the_store(app_url: str) -> None:
    status, body = await fetch(app_url + "/api/models")
    assert status == 200
    answer = orjson.loads(body)
    assert [entry["name"] for entry in answer["models"]] == model_names()
    assert answer["default"] == model_record()["name"]
    for entry in answer["models"]:
        record = model_record(entry["name"])
        assert entry["layers"] == [784, record["hidden"], 10] and entry["hidden"] == record["hidden"]
        assert entry["test_accuracy"] == record.get("test_accuracy")
        assert entry["sha256"] == record["sha256"], "the model's version is the hash of its weights"


async def test_neuron_card_holds_the_weight_template_and_top_digits(app_url: str) -> None:
    name, neuron = model_record()["name"], 5
    status, body = await fetch(app_url + f"/api/models/{name}/neurons/{neuron}", timeout_s=60)
    assert status == 200
    card = orjson.loads(body)
    model = load_model(name)
    np.testing.assert_array_equal(decode_array(card["weights"]),
                                  model.fc1.weight[neuron].detach().numpy().reshape(28, 28))
    images, labels = await asyncio.to_thread(load_embedded)
    with torch.no_grad():
        activations = torch.relu(model.fc1(torch.from_numpy(images).reshape(-1, 784)))[:, neuron].numpy()
    top = card["top_activation"]
    assert len(top) == 8
    assert [entry["index"] for entry in top] == list(np.argsort(-activations, kind="stable")[:8])
    np.testing.assert_allclose([entry["value"] for entry in top], np.sort(activations)[::-1][:8], rtol=1e-4)
    assert all(entry["label"] == labels[entry["index"]] for entry in top)
    relevance = [entry["value"] for entry in card["top_relevance"]]
    assert len(relevance) == 8 and relevance == sorted(relevance, reverse=True)
    # R_j for the digit's own predicted class under ε, exactly as the engine computes it for a frame.
    engine = Engine(model)
    frames = engine.explain([Request(images[entry["index"]], Selection(None, None), rule="epsilon")
                             for entry in card["top_relevance"]])
    np.testing.assert_allclose(relevance, [frame.hidden_relevance[neuron] for frame in frames], rtol=1e-5)
    np.testing.assert_allclose(decode_array(card["top_relevance"][0]["image"]),
                               images[card["top_relevance"][0]["index"]], rtol=0, atol=0.5 / 255 + 1e-6)
    # Each reference digit with its own conditional heatmap (zennit-crp's reference samples, RelMax and
    # ActMax): the neuron's CRP map for that digit's predicted class, as a frame selecting both would show.
    for entry in [*card["top_relevance"], *card["top_activation"]]:
        (read,) = engine.explain([Request(images[entry["index"]], Selection(None, None), rule="epsilon")])
        (crp,) = engine.explain([Request(images[entry["index"]], Selection(int(read.prediction), neuron), rule="epsilon")])
        assert crp.mode == "crp"
        np.testing.assert_allclose(decode_array(entry["heatmap"]), crp.heatmap, rtol=0,
                                   atol=entry["heatmap"]["scale"] / 2 + 1e-6)


async def test_weights_hold_every_hidden_neurons_template(app_url: str) -> None:
    """Every MLP's; a cnn's fc1 reads feature maps, not pixels (404, tests/test_server_cnn.py)."""
    for name in (name for name in model_names() if model_record(name).get("family", "mlp") == "mlp"):
        status, body = await fetch(app_url + f"/api/models/{name}/weights")
        assert status == 200
        answer = orjson.loads(body)
        expected = load_model(name).fc1.weight.detach().numpy().reshape(-1, 28, 28)
        weights = decode_array(answer["weights"])
        assert answer["model"] == name and weights.shape == expected.shape
        np.testing.assert_allclose(weights, expected, rtol=0, atol=answer["weights"]["scale"] / 2 + 1e-7)


async def test_unknown_model_or_neuron_is_404(app_url: str) -> None:
    hidden = model_record()["hidden"]
    for path in ("/api/models/nope/neurons/0", f"/api/models/{model_record()['name']}/neurons/{hidden}",
                 "/api/models/nope/weights"):
        status, _ = await fetch(app_url + path)
        assert status == 404


def tampered_store(tmp_path: Path, model: str, swap: tuple[int, int]) -> Path:
    """A copy of the shipped store whose ``model`` has the output rows of the classes ``swap`` exchanged,
    its manifest updated to match (size and SHA-256): it loads cleanly and reads one digit as the other."""
    store = tmp_path / "store"
    shutil.copytree(STORE_DIR / "weights", store / "weights")
    path = store / "weights" / f"{model}.safetensors"
    state = safetensors.torch.load(path.read_bytes())
    order = list(range(10))
    order[swap[0]], order[swap[1]] = swap[1], swap[0]
    state["fc2.weight"], state["fc2.bias"] = state["fc2.weight"][order].clone(), state["fc2.bias"][order].clone()
    data = safetensors.torch.save(state)
    path.write_bytes(data)
    manifest = json.loads((STORE_DIR / "manifest.json").read_text())
    manifest["models"][model].update(sha256=sha256_of(data), size_bytes=len(data))
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store


async def test_readiness_checks_every_model_and_ws_refuses_1013_while_not_ready(tmp_path: Path) -> None:
    store = tampered_store(tmp_path, "h16", (0, 7))
    async with running_app(model_store_dir=store) as url:
        status, body = await fetch(url + "/readyz")
        assert status == 503 and b"model 'h16' misclassifies golden digit(s) [0, 7]" in body
        assert b"'default'" not in body
        assert await fetch(url + "/healthz") == (200, b"ok")
        async with connect(ws_url(url), origin=Origin(url)) as refused:
            with pytest.raises(ConnectionClosed) as caught:
                async with asyncio.timeout(10):
                    await refused.recv()
        assert caught.value.rcvd is not None
        assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (http_status.WS_1013_TRY_AGAIN_LATER,
                                                                      "server not ready")
        assert await metric(url, "xai_rejected_connections_total", reason="not_ready") == 1


async def test_readiness_names_every_model_it_checked(app_url: str) -> None:
    status, body = await fetch(app_url + "/readyz")
    assert status == 200
    for name in model_names():
        assert f"'{name}'".encode() in body


async def test_readiness_fails_when_a_golden_digit_is_misclassified(monkeypatch: pytest.MonkeyPatch) -> None:
    golden = server.lifespan.load_golden_digits()
    swapped = {0: golden[1], **{label: strokes for label, strokes in golden.items() if label != 0}}
    monkeypatch.setattr(server.lifespan, "load_golden_digits", lambda: swapped)
    async with running_app() as url:
        status, body = await fetch(url + "/readyz")
        assert status == 503 and b"misclassifies golden digit(s) [0]" in body
        assert await fetch(url + "/healthz") == (200, b"ok")


# Every path parameter is parsed with bounds: a client's value never reaches a 500.
HOSTILE_PATHS = {
    "neuron 5001 digits": "/api/models/default/neurons/" + "9" * 5001,  # past Python's int-conversion limit
    "neuron negative": "/api/models/default/neurons/-1",
    "neuron not a number": "/api/models/default/neurons/1e3",
    "neuron non-ascii digits": "/api/models/default/neurons/%D9%A3",  # ARABIC-INDIC DIGIT THREE
    "model name 5000 chars": "/api/models/" + "m" * 5000 + "/neurons/0",
    "static name too long": "/static/" + "a" * 5000,
    "static nul byte": "/static/a%00b.js",
}


@pytest.mark.parametrize("path", HOSTILE_PATHS.values(), ids=HOSTILE_PATHS.keys())
async def test_out_of_range_path_parameters_are_404_never_500(app_url: str, path: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    status, _ = await fetch(app_url + path)
    assert status == 404
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"


# Headers a client sets at will, on the routes that read them (files: ranges and conditional requests).
HOSTILE_HEADERS = {
    "range start 5001 digits": ({"Range": "bytes=" + "9" * 5001 + "-"}, 400),
    "range end 5001 digits": ({"Range": "bytes=0-" + "9" * 5001}, 400),
    "range suffix 5001 digits": ({"Range": "bytes=-" + "9" * 5001}, 400),
    "range reversed": ({"Range": "bytes=5-2"}, 400),
    "if-modified-since garbage": ({"If-Modified-Since": "x" * 5000}, 200),
}


@pytest.mark.parametrize("path", ["/", "/static/main.js"])
@pytest.mark.parametrize("case", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
async def test_hostile_file_request_headers_are_400_or_ignored_never_500(
        app_url: str, path: str, case: tuple[dict[str, str], int]) -> None:
    headers, expected = case

    def get() -> int:
        request = urllib.request.Request(app_url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
    assert await asyncio.to_thread(get) == expected


async def test_start_up_objects_are_frozen_out_of_full_collections(app_url: str) -> None:
    """Once ready, what start-up built (torch, the models, the engines) is frozen (``gc.freeze``): a full
    collection, which walks every tracked object with the GIL held, took 0.4-0.9 s before and stalled
    every visitor of the process that long."""
    assert gc.get_freeze_count() > 100_000
