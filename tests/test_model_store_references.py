"""model_store.references: the cnn's reference samples (RelMax, ActMax) against zennit-crp's definition, and
their verified storage.

The definition is recomputed here independently, one digit per ``CondAttribution`` call (the module batches
250): relevance (or activation) at the layer's output for the digit's own label under zennit's
EpsilonPlusFlat, the maximum over positions, divided by the sum of the absolute maxima over channels;
per channel the top k; for each, the heatmap of the receptive-field neuron alone, started at the layer.
"""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch
from crp.attribution import CondAttribution
from crp.concepts import ChannelConcept
from torch import nn
from zennit.composites import EpsilonPlusFlat

from model_store import datasets
from model_store.cnn_training import CnnTrainConfig, train_cnn
from model_store.manifest import STORE_DIR, ModelStoreError, read_manifest, sha256_of, verify_files
from model_store.references import (
    KINDS,
    REFERENCE_LAYERS,
    TOP_K,
    compute_references,
    load_references,
    receptive_box,
    register_references,
)
from model_store.store import load_model, register_model

SUBSET = 240  # training digits the small references are computed on


def definition(model: nn.Module, images: np.ndarray, labels: np.ndarray,
               layer: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """zennit-crp's per-sample channel score and receptive-field neuron, ``(N, C)`` each, one digit at a time."""
    attribution = CondAttribution(copy.deepcopy(model))
    scores, neurons = [], []
    for image, label in zip(images, labels):
        x = torch.from_numpy(image).float().view(1, 1, 28, 28).requires_grad_()
        result = attribution(x, [{"y": [int(label)]}], EpsilonPlusFlat(), record_layer=[layer],
                             exclude_parallel=False)
        values = (result.relevances if kind == "relevance" else result.activations)[layer][0]
        flat = values.reshape(values.shape[0], -1)
        top = flat.max(dim=1).values
        scores.append((top / (top.abs().sum() + 1e-10)).numpy())
        neurons.append(flat.argmax(dim=1).numpy())
    return np.stack(scores), np.stack(neurons)


def neuron_heatmap(model: nn.Module, image: np.ndarray, layer: str, channel: int, neuron: int) -> np.ndarray:
    """The heatmap zennit-crp draws for a reference sample (``rf=True``), ``(28, 28)``."""
    x = torch.from_numpy(image).float().view(1, 1, 28, 28).requires_grad_()
    result = CondAttribution(copy.deepcopy(model))(x, [{layer: {channel: neuron}}], EpsilonPlusFlat(),
                                                   mask_map=ChannelConcept.mask_rf, start_layer=layer,
                                                   exclude_parallel=False)
    heatmap: np.ndarray = result.heatmap[0].detach().numpy()
    return heatmap


@pytest.fixture(scope="module")
def embedded() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedded digits and the positions of the 4,500 training digits."""
    images, labels = datasets.load_embedded()
    train_idx, _ = datasets.split_indices(labels)
    return images, labels, train_idx


@pytest.fixture(scope="module")
def small(embedded: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[nn.Sequential, np.ndarray, dict[str, np.ndarray]]:
    """A briefly trained cnn, ``SUBSET`` training-digit indices and the references computed on them."""
    images, labels, train_idx = embedded
    torch.set_num_threads(1)
    subset = train_idx[:SUBSET]
    model = train_cnn(CnnTrainConfig(hidden=16, epochs=3, augment="mild", ema_decay=0.9),
                      (images[train_idx[:900]], labels[train_idx[:900]]),
                      (images[subset], labels[subset]), progress=False).model
    return model, subset, compute_references(model, images[subset], labels[subset], subset)


@pytest.mark.parametrize("layer", REFERENCE_LAYERS)
@pytest.mark.parametrize("kind", KINDS)
def test_top_k_equals_the_definition(small: tuple[nn.Sequential, np.ndarray, dict[str, np.ndarray]],
                                     embedded: tuple[np.ndarray, np.ndarray, np.ndarray], layer: str, kind: str) -> None:
    model, subset, tensors = small
    images, labels, _ = embedded
    scores, neurons = definition(model, images[subset], labels[subset], layer, kind)
    stored_index, stored_score = tensors[f"{layer}.{kind}.index"], tensors[f"{layer}.{kind}.score"]
    expected_top = -np.sort(-scores, axis=0)[:TOP_K].T  # (C, k), best first
    np.testing.assert_allclose(stored_score, expected_top, rtol=1e-4, atol=1e-6)
    position = {int(index): row for row, index in enumerate(subset)}
    rows = np.vectorize(position.__getitem__)(stored_index)  # (C, k): each stored sample's row in the subset
    channels = np.arange(scores.shape[1])[:, None]
    np.testing.assert_allclose(scores[rows, channels], stored_score, rtol=1e-4, atol=1e-6)
    distinct = np.abs(scores[rows, channels]) > 1e-6  # a dead unit's ties at zero have no unique argmax
    assert np.array_equal(neurons[rows, channels][distinct], tensors[f"{layer}.{kind}.neuron"][distinct])


@pytest.mark.parametrize("layer", REFERENCE_LAYERS)
def test_boxes_patches_and_heatmaps_equal_the_definition(
        small: tuple[nn.Sequential, np.ndarray, dict[str, np.ndarray]],
        embedded: tuple[np.ndarray, np.ndarray, np.ndarray], layer: str) -> None:
    model, _, tensors = small
    images = embedded[0]
    for channel in (0, 5):
        for j in (0, TOP_K - 1):
            index = int(tensors[f"{layer}.relevance.index"][channel, j])
            neuron = int(tensors[f"{layer}.relevance.neuron"][channel, j])
            top, left, bottom, right = tensors[f"{layer}.relevance.box"][channel, j]
            assert (top, left, bottom, right) == receptive_box(model, layer, neuron)
            patch = tensors[f"{layer}.relevance.patch"][channel, j]
            assert np.array_equal(patch, np.rint(images[index, top:bottom, left:right] * 255).astype(np.uint8))
            expected = neuron_heatmap(model, images[index], layer, channel, neuron)
            stored = tensors[f"{layer}.relevance.heatmap"][channel, j].astype(np.float32)
            np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max() + 1e-7)
            outside = np.ones((28, 28), dtype=bool)
            outside[top:bottom, left:right] = False
            assert not expected[outside].any(), "the single neuron's heatmap reaches outside its receptive field"


def test_receptive_fields_are_the_layers_geometry(small: tuple[nn.Sequential, np.ndarray, dict[str, np.ndarray]]) -> None:
    model = small[0]
    assert receptive_box(model, "conv1", 0) == (0, 0, 5, 5)
    assert receptive_box(model, "conv1", 24 * 23 + 23) == (23, 23, 28, 28)
    assert receptive_box(model, "conv2", 0) == (0, 0, 14, 14)
    assert receptive_box(model, "conv2", 8 * 7 + 7) == (14, 14, 28, 28)
    assert receptive_box(model, "fc1", 0) == (0, 0, 28, 28)


@pytest.fixture
def ref_store(tmp_path: Path, small: tuple[nn.Sequential, np.ndarray, dict[str, np.ndarray]]) -> Path:
    """A store holding the small cnn ``tiny`` and its references."""
    model, subset, tensors = small
    register_model(model, "tiny", {}, tmp_path, make_default=True, family="cnn")
    register_references("tiny", tensors, {"samples": {"n": len(subset)}}, tmp_path)
    return tmp_path


def test_load_references_returns_typed_arrays(ref_store: Path, small: tuple[nn.Sequential, np.ndarray,
                                                                         dict[str, np.ndarray]]) -> None:
    tensors = small[2]
    entry = read_manifest(ref_store)["models"]["tiny"]["references"]
    assert entry["composite"] == "EpsilonPlusFlat" and entry["k"] == TOP_K
    assert entry["layers"] == list(REFERENCE_LAYERS) and (entry["max_target"], entry["abs_norm"]) == ("max", True)
    references = load_references("tiny", ref_store)
    assert set(references) == set(REFERENCE_LAYERS)
    conv2 = references["conv2"]["activation"]
    assert conv2.index.dtype == np.int64 and conv2.index.shape == (16, TOP_K)
    assert conv2.score.dtype == np.float32 and conv2.box.shape == (16, TOP_K, 4)
    assert conv2.patch.dtype == np.float32 and conv2.patch.shape == (16, TOP_K, 14, 14)
    assert conv2.heatmap.dtype == np.float32 and conv2.heatmap.shape == (16, TOP_K, 28, 28)
    assert references["conv1"]["relevance"].patch.shape == (8, TOP_K, 5, 5)
    assert references["fc1"]["relevance"].patch.shape == (16, TOP_K, 28, 28)
    assert np.array_equal(conv2.patch, tensors["conv2.activation.patch"] / np.float32(255.0))
    assert verify_files("tiny", ref_store) == ["tiny"]


def _references_file(store: Path) -> Path:
    return store / read_manifest(store)["models"]["tiny"]["references"]["file"]


def test_tampered_references_are_refused_by_loader_and_supervisor_check(ref_store: Path) -> None:
    path = _references_file(ref_store)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=r"tiny\.references\.safetensors: SHA-256 .* does not match"):
        load_references("tiny", ref_store)
    with pytest.raises(ModelStoreError, match=r"tiny\.references\.safetensors: SHA-256"):
        verify_files(None, ref_store)


def test_missing_references_file_is_refused(ref_store: Path) -> None:
    _references_file(ref_store).unlink()
    with pytest.raises(ModelStoreError, match=r"tiny\.references\.safetensors: checkpoint file missing"):
        load_references("tiny", ref_store)


def test_references_of_the_wrong_layout_are_refused_though_hashed(ref_store: Path) -> None:
    path = _references_file(ref_store)
    arrays = safetensors.numpy.load(path.read_bytes())
    arrays["conv1.relevance.patch"] = arrays["conv1.relevance.patch"][:, :, :4, :4].copy()
    data = safetensors.numpy.save(arrays)
    path.write_bytes(data)
    manifest = read_manifest(ref_store)
    manifest["models"]["tiny"]["references"].update(sha256=sha256_of(data), size_bytes=len(data))
    (ref_store / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelStoreError, match=r"conv1\.relevance\.patch is uint8 \(8, 8, 4, 4\), expected uint8 "
                                              r"\(8, 8, 5, 5\)"):
        load_references("tiny", ref_store)


def test_a_model_without_references_says_so(tmp_path: Path) -> None:
    shutil.copy(STORE_DIR / "manifest.json", tmp_path / "manifest.json")
    shutil.copytree(STORE_DIR / "weights", tmp_path / "weights")
    with pytest.raises(ModelStoreError, match="model 'h16' has no reference samples in the store"):
        load_references("h16", tmp_path)


# ---- the shipped cnn's references ------------------------------------------------------------------------

SHIPPED_CHECKS = 2  # channels per layer and kind whose stored samples are recomputed


@pytest.mark.parametrize("layer", REFERENCE_LAYERS)
@pytest.mark.parametrize("kind", KINDS)
def test_shipped_references_follow_the_definition(embedded: tuple[np.ndarray, np.ndarray, np.ndarray],
                                                  layer: str, kind: str) -> None:
    """Each stored sample's score and neuron recomputed alone; no digit of a random subset of the training
    digits outside the stored top k scores above the k-th (so the stored k are the top over all 4,500)."""
    images, labels, train_idx = embedded
    model = load_model("cnn")
    stored = load_references("cnn")[layer][kind]
    channels = np.linspace(0, stored.index.shape[0] - 1, SHIPPED_CHECKS).astype(int)
    for channel in channels:
        rows = stored.index[channel]
        scores, neurons = definition(model, images[rows], labels[rows], layer, kind)
        np.testing.assert_allclose(scores[:, channel], stored.score[channel], rtol=1e-4, atol=1e-6)
        assert np.array_equal(neurons[:, channel], stored.neuron[channel])
        for j, (top, left, bottom, right) in enumerate(stored.box[channel]):
            assert np.array_equal(stored.patch[channel, j], images[rows[j], top:bottom, left:right])
    others = np.random.default_rng(7).choice(train_idx, 200, replace=False)
    scores, _ = definition(model, images[others], labels[others], layer, kind)
    for channel in range(stored.index.shape[0]):
        outside = ~np.isin(others, stored.index[channel])
        assert (scores[outside, channel] <= stored.score[channel, -1] + 1e-6).all(), f"channel {channel}"
    assert set(stored.index.ravel()) <= set(train_idx.tolist()), "reference samples come from the training digits"
