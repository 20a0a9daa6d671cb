"""Model store: architecture, verified loading, refusals, manifest, training, CLI."""

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

import model_store
from model_store import datasets
from model_store.architecture import CNN_LAYER_NAMES, build, build_cnn, build_model
from model_store.cnn_training import CnnTrainConfig, train_cnn
from model_store.families import module_names, output_shapes
from model_store.manifest import STORE_DIR, ModelStoreError, read_manifest, sha256_of
from model_store.store import load_model, register_model
from model_store.training import TrainConfig, train

SHIPPED = {"default": 128, "h16": 16}
# The official-test-set targets for the shipped models (>= 98.0 %, >= 94.0 %).
TEST_ACCURACY_FLOOR = {"default": 0.98, "h16": 0.94}
MNIST_DIR = datasets.mnist_dir_from_env()
needs_mnist = pytest.mark.skipif(
    MNIST_DIR is None, reason="MNIST_DIR is not set: the official test set is needed to measure accuracy"
)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A private copy of the shipped store, safe to damage."""
    copy = tmp_path / "store"
    copy.mkdir()
    shutil.copy(STORE_DIR / "manifest.json", copy / "manifest.json")
    shutil.copytree(STORE_DIR / "weights", copy / "weights")
    return copy


def _rewrite_manifest(store: Path, name: str, **changes: object) -> None:
    manifest = read_manifest(store)
    manifest["models"][name].update(changes)
    (store / "manifest.json").write_text(json.dumps(manifest))


def test_architecture_layer_names_and_shapes() -> None:
    model = build_model(32)
    assert [name for name, _ in model.named_children()] == ["flatten", "fc1", "relu", "fc2"]
    assert model.fc1.weight.shape == (32, 784) and model.fc2.weight.shape == (10, 32)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert model(torch.rand(3, 784)).shape == (3, 10)


@pytest.mark.parametrize("name, hidden", SHIPPED.items())
def test_shipped_models_load_in_eval_mode(name: str, hidden: int) -> None:
    model = load_model(name)
    assert not model.training
    assert model.fc1.out_features == hidden
    assert [n for n, _ in model.named_children()] == list(model_store.LAYER_NAMES)


def test_none_loads_the_default_model() -> None:
    default = read_manifest()["default"]
    assert torch.equal(load_model(None).fc1.weight, load_model(default).fc1.weight)


def test_register_and_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(8)
    entry = register_model(model, "tiny", {"val_accuracy": 0.5}, tmp_path, make_default=True)
    loaded = load_model(None, tmp_path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert entry["architecture"]["layers"] == [784, 8, 10]
    assert read_manifest(tmp_path)["default"] == "tiny"


def test_tampered_byte_is_refused(store: Path) -> None:
    path = store / "weights" / "default.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=r"default\.safetensors: SHA-256 .* does not match"):
        load_model("default", store)


def test_truncated_file_is_refused(store: Path) -> None:
    path = store / "weights" / "default.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelStoreError, match=r"default\.safetensors: size 1000 bytes, manifest says"):
        load_model("default", store)


def test_wrong_hash_in_manifest_is_refused(store: Path) -> None:
    _rewrite_manifest(store, "h16", sha256="0" * 64)
    with pytest.raises(ModelStoreError, match="does not match the manifest"):
        load_model("h16", store)


def test_missing_file_is_refused(store: Path) -> None:
    (store / "weights" / "h16.safetensors").unlink()
    with pytest.raises(ModelStoreError, match=r"h16\.safetensors: checkpoint file missing"):
        load_model("h16", store)


def test_unknown_name_is_refused_with_the_known_names(store: Path) -> None:
    with pytest.raises(ModelStoreError, match=r"unknown model 'nope'; the store holds: cnn, default, h16"):
        load_model("nope", store)


@pytest.mark.parametrize("escape", ["weights/../manifest.json", "../default.safetensors", "/etc/passwd",
                                    "other/h16.safetensors"])
def test_path_escaping_the_store_is_refused(store: Path, escape: str) -> None:
    _rewrite_manifest(store, "h16", file=escape)
    with pytest.raises(ModelStoreError, match="escapes the store"):
        load_model("h16", store)


def test_symlinked_checkpoint_is_refused(store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.safetensors"
    shutil.copy(store / "weights" / "h16.safetensors", outside)
    (store / "weights" / "h16.safetensors").unlink()
    (store / "weights" / "h16.safetensors").symlink_to(outside)
    with pytest.raises(ModelStoreError, match="symlink"):
        load_model("h16", store)


def test_valid_hash_of_non_safetensors_bytes_is_refused_cleanly(store: Path) -> None:
    junk = b"\x00" * 64
    (store / "weights" / "h16.safetensors").write_bytes(junk)
    _rewrite_manifest(store, "h16", sha256=sha256_of(junk), size_bytes=len(junk))
    with pytest.raises(ModelStoreError, match="not a valid safetensors file"):
        load_model("h16", store)


def test_symlinked_weights_directory_is_refused(store: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (store / "weights").rename(outside)
    (store / "weights").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelStoreError, match=r"weights: .*symlink"):
        load_model("h16", store)


def _damage(store: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((store / "manifest.json").read_text())
    change(manifest)
    (store / "manifest.json").write_text(json.dumps(manifest))


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest["models"]["h16"].pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest["models"]["h16"].update({key: value})


# Each defect, and the words of the one error that must name it: file, model and field.
MANIFEST_DEFECTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "file missing": (_delete("file"), "model 'h16': field 'file' missing"),
    "sha256 missing": (_delete("sha256"), "model 'h16': field 'sha256' missing"),
    "size missing": (_delete("size_bytes"), "model 'h16': field 'size_bytes' missing"),
    "hidden missing": (_delete("hidden"), "model 'h16': field 'hidden' missing"),
    "file a number": (_set("file", 5), "model 'h16': field 'file' must be a string, got int"),
    "sha256 null": (_set("sha256", None), "model 'h16': field 'sha256' must be a string, got NoneType"),
    "sha256 not hex": (_set("sha256", "z" * 64), "model 'h16': field 'sha256' must be 64 hex digits"),
    "size a string": (_set("size_bytes", "51208"), "model 'h16': field 'size_bytes' must be an integer, got str"),
    "size a bool": (_set("size_bytes", True), "model 'h16': field 'size_bytes' must be an integer, got bool"),
    "hidden a float": (_set("hidden", 16.0), "model 'h16': field 'hidden' must be an integer, got float"),
    "hidden zero": (_set("hidden", 0), "model 'h16': field 'hidden' must be >= 1"),
    "architecture a string": (_set("architecture", "mlp"),
                              "model 'h16': field 'architecture' must be an object, got str"),
    "layers disagree": (_set("architecture", {"layers": [784, 32, 10]}),
                        r"model 'h16': field 'architecture\.layers' is \[784, 32, 10\], expected \[784, 16, 10\]"),
    "accuracy a string": (_set("val_accuracy", "high"),
                          "model 'h16': field 'val_accuracy' must be a number or null, got str"),
    "entry a list": (lambda manifest: manifest["models"].update(h16=[]),
                     "model 'h16': entry must be an object, got list"),
    "default missing": (lambda manifest: manifest.pop("default"), "field 'default' missing"),
    "default unknown": (lambda manifest: manifest.update(default="nope"),
                        "field 'default' names 'nope', which is not in 'models'"),
    "format missing": (lambda manifest: manifest.pop("format"), "field 'format' missing"),
    "format unknown": (lambda manifest: manifest.update(format=2), "field 'format' is 2, expected 1"),
}


@pytest.mark.parametrize("defect", MANIFEST_DEFECTS.values(), ids=MANIFEST_DEFECTS.keys())
def test_every_manifest_defect_is_a_store_error_naming_file_model_and_field(
        store: Path, defect: tuple[Callable[[dict[str, Any]], None], str]) -> None:
    change, words = defect
    _damage(store, change)
    with pytest.raises(ModelStoreError, match=re.escape(str(store / "manifest.json")) + ": " + words):
        load_model("h16", store)


def _rewrite_tensors(store: Path, name: str, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Change ``name``'s tensors and record the new file in the manifest (size and hash match)."""
    path = store / "weights" / f"{name}.safetensors"
    state = safetensors.torch.load(path.read_bytes())
    change(state)
    data = safetensors.torch.save(state)
    path.write_bytes(data)
    _rewrite_manifest(store, name, sha256=sha256_of(data), size_bytes=len(data))


def test_manifest_hidden_is_checked_against_the_tensors(store: Path) -> None:
    _rewrite_manifest(store, "h16", hidden=32, architecture={"layers": [784, 32, 10]})
    with pytest.raises(ModelStoreError, match=r"h16\.safetensors: model 'h16': fc1\.weight has shape \(16, 784\), "
                                              r"expected \(32, 784\) \(manifest field 'hidden' is 32\)"):
        load_model("h16", store)


TENSOR_DEFECTS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], str]] = {
    "bias too long": (lambda state: state.update({"fc1.bias": torch.zeros(17)}),
                      r"fc1\.bias has shape \(17,\), expected \(16,\)"),
    "weight a scalar": (lambda state: state.update({"fc1.weight": torch.tensor(1.0)}),
                        r"fc1\.weight has shape \(\), expected \(16, 784\)"),
    "output transposed": (lambda state: state.update({"fc2.weight": state["fc2.weight"].T.contiguous()}),
                          r"fc2\.weight has shape \(16, 10\), expected \(10, 16\)"),
    "float64": (lambda state: state.update({"fc2.bias": state["fc2.bias"].double()}),
                r"fc2\.bias has dtype torch\.float64, expected torch\.float32"),
    "extra tensor": (lambda state: state.update({"fc3.weight": torch.zeros(1)}), r"tensors \[.*'fc3\.weight'.*\]"),
}


@pytest.mark.parametrize("defect", TENSOR_DEFECTS.values(), ids=TENSOR_DEFECTS.keys())
def test_every_tensor_shape_and_dtype_is_checked(store: Path,
                                                 defect: tuple[Callable[[dict[str, torch.Tensor]], None], str]) -> None:
    change, words = defect
    _rewrite_tensors(store, "h16", change)
    with pytest.raises(ModelStoreError, match=r"h16\.safetensors: .*" + words):
        load_model("h16", store)


def test_shipped_manifest_is_consistent() -> None:
    manifest = read_manifest()
    assert manifest["default"] in manifest["models"]
    assert set(SHIPPED) <= set(manifest["models"])
    for name, entry in manifest["models"].items():
        data = (STORE_DIR / entry["file"]).read_bytes()
        assert (len(data), sha256_of(data)) == (entry["size_bytes"], entry["sha256"]), name
        if entry.get("family", "mlp") == "mlp":
            assert entry["architecture"]["layers"] == [784, entry["hidden"], 10]
        else:
            assert entry["architecture"]["shapes"] == output_shapes(entry["family"], entry["hidden"])
        assert entry["training_data"]["name"] == datasets.EMBEDDED_NAME
        assert entry["command"].startswith("python -m model_store train ")
        assert 0.9 < entry["val_accuracy"] <= 1.0
        for key in ("created", "libraries", "config", "test_accuracy"):
            assert key in entry, f"{name} lacks {key}"
    assert SHIPPED["default"] >= manifest["models"]["default"]["hidden"]


def test_short_training_run_beats_chance_and_is_deterministic() -> None:
    images, labels = datasets.load_embedded()
    train_set, val_set = datasets.split_embedded(images, labels, n_val=500, seed=0)
    small = (train_set[0][:1500], train_set[1][:1500])
    # a short run needs a short EMA memory: 0.999 would average over ~1000 steps
    config = TrainConfig(hidden=16, epochs=6, augment="mild", lr=3e-3, eval_every=3, ema_decay=0.9)
    first = train(config, small, val_set, progress=False)
    second = train(config, small, val_set, progress=False)
    assert first.val_accuracy > 0.7, "10 classes: chance is 0.1"
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), f"{key} differs between seeded runs"


def test_select_last_keeps_the_end_of_the_schedule() -> None:
    images, labels = datasets.load_embedded()
    train_set, (val_x, val_y) = datasets.split_embedded(images, labels, n_val=500, seed=0)
    small = (train_set[0][:600], train_set[1][:600])
    # wrong validation labels: the better the model learns, the worse it scores, so early stopping picks an
    # early epoch and only select="last" keeps the end
    wrong_val = (val_x, (val_y + 1) % 10)
    config = TrainConfig(hidden=8, epochs=6, augment="none", lr=3e-3, eval_every=1, smooth_evals=1,
                         ema_decay=0.5)
    best = train(config, small, wrong_val, progress=False)
    last = train(replace(config, select="last"), small, wrong_val, progress=False)
    assert best.best_epoch < config.epochs and last.best_epoch == config.epochs
    assert not torch.equal(best.model.fc1.weight, last.model.fc1.weight)
    with pytest.raises(ValueError, match="unknown selection 'first'"):
        TrainConfig(select="first")


def test_embedded_split_is_stratified_and_disjoint() -> None:
    images, labels = datasets.load_embedded()
    assert images.shape == (5000, 28, 28) and 0.0 <= images.min() and images.max() <= 1.0
    (train_x, train_y), (val_x, val_y) = datasets.split_embedded(images, labels)
    assert len(train_y) == 4500 and np.bincount(val_y).tolist() == [50] * 10
    train_rows = {row.tobytes() for row in train_x}
    assert not any(row.tobytes() in train_rows for row in val_x[:50])


def test_idx_reader_accepts_raw_and_gz_and_rejects_bad_magic(tmp_path: Path) -> None:
    import gzip

    pixels = np.arange(2 * 28 * 28, dtype=np.uint8) % 251
    header = bytes([0, 0, 8, 3]) + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(header + pixels.tobytes())
    labels = bytes([0, 0, 8, 1]) + (2).to_bytes(4, "big") + bytes([3, 7])
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(labels)
    images, read_labels = datasets.load_idx(tmp_path, "test")
    assert images.shape == (2, 28, 28) and read_labels.tolist() == [3, 7]
    assert images[0, 0, 1] == pytest.approx(1 / 255)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x09\x03" + header[4:])
    with pytest.raises(ValueError, match="bad magic number"):
        datasets.load_idx(tmp_path, "test")


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model_store", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_cli_list_json() -> None:
    result = _cli("list", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    by_name = {m["name"]: m for m in listing["models"]}
    assert {name: by_name[name]["hidden"] for name in SHIPPED} == SHIPPED
    assert by_name["default"]["test_accuracy"] >= TEST_ACCURACY_FLOOR["default"]


def test_cli_refuses_unknown_model_with_a_clear_message(store: Path) -> None:
    result = _cli("--store", str(store), "eval", "nope", "--mnist-dir", str(store))
    assert result.returncode == 2
    assert "unknown model 'nope'" in result.stderr and "Traceback" not in result.stderr


@needs_mnist
def test_cli_eval_json_on_official_test_set() -> None:
    result = _cli("eval", "h16", "--json", "--mnist-dir", str(MNIST_DIR))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == "h16" and report["n"] == 10000
    assert np.array(report["confusion"]).sum() == 10000
    assert report["accuracy"] == pytest.approx(read_manifest()["models"]["h16"]["test_accuracy"], abs=1e-4)


@needs_mnist
@pytest.mark.parametrize("name, floor", TEST_ACCURACY_FLOOR.items())
def test_shipped_model_accuracy_on_official_test_set(name: str, floor: float) -> None:
    from model_store.evaluate import evaluate

    images, labels = datasets.load_idx(MNIST_DIR, "test")
    assert evaluate(load_model(name), images, labels)["accuracy"] >= floor


# ---- the cnn family -------------------------------------------------------------------------------------

CNN_HIDDEN = 12  # a small fc1 for the registered test models; the shipped cnn's width is in the manifest


def _output_shapes_by_forward(model: torch.nn.Sequential) -> dict[str, list[int]]:
    x, shapes = torch.rand(2, 1, 28, 28), {}
    for name, module in model.named_children():
        x = module(x)
        shapes[name] = list(x.shape[1:])
    return shapes


@pytest.mark.parametrize("family, hidden", [("mlp", 16), ("cnn", 12), ("cnn", 64)])
def test_family_geometry_equals_the_built_network(family: str, hidden: int) -> None:
    """families.output_shapes (torch-free, what the manifest is checked against) is what the builder computes."""
    model = build(family, hidden)
    assert [name for name, _ in model.named_children()] == list(module_names(family))
    assert output_shapes(family, hidden) == _output_shapes_by_forward(model)


@pytest.fixture
def cnn_store(store: Path) -> Path:
    """The shipped store's copy with a small untrained cnn ``tiny`` registered in it."""
    torch.manual_seed(1)
    register_model(build_cnn(CNN_HIDDEN), "tiny", {"val_accuracy": 0.1}, store, family="cnn")
    return store


def test_cnn_round_trip_is_the_plain_module_and_mlps_load_unchanged(cnn_store: Path) -> None:
    entry = read_manifest(cnn_store)["models"]["tiny"]
    assert entry["family"] == "cnn"
    assert entry["architecture"] == {"modules": list(CNN_LAYER_NAMES), "shapes": output_shapes("cnn", CNN_HIDDEN)}
    loaded = load_model("tiny", cnn_store)
    assert type(loaded) is torch.nn.Sequential and not loaded.training
    torch.manual_seed(1)
    for key, value in build_cnn(CNN_HIDDEN).state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    for name, hidden in SHIPPED.items():  # entries without 'family' are MLPs, as before
        assert "family" not in read_manifest(cnn_store)["models"][name]
        assert load_model(name, cnn_store).fc1.weight.shape == (hidden, 784)


def test_tampered_cnn_weights_are_refused(cnn_store: Path) -> None:
    path = cnn_store / "weights" / "tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelStoreError, match=r"tiny\.safetensors: SHA-256 .* does not match"):
        load_model("tiny", cnn_store)


def _set_cnn(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest["models"]["tiny"].update({key: value})


def _cnn_architecture(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda manifest: manifest["models"]["tiny"]["architecture"].update(changes)


CNN_MANIFEST_DEFECTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "family unknown": (_set_cnn("family", "rnn"), "model 'tiny': field 'family' is 'rnn', expected one of mlp, cnn"),
    "family a number": (_set_cnn("family", 2), "model 'tiny': field 'family' must be a string, got int"),
    "architecture missing": (lambda manifest: manifest["models"]["tiny"].pop("architecture"),
                             "model 'tiny': field 'architecture' missing \\(required for family 'cnn'\\)"),
    "modules renamed": (_cnn_architecture(modules=["conv1", "relu", "fc2"]),
                        "model 'tiny': field 'architecture.modules' is \\['conv1', 'relu', 'fc2'\\], expected"),
    "hidden disagrees with shapes": (_set_cnn("hidden", 13),
                                     "model 'tiny': field 'architecture.shapes' is .*'fc1': \\[12\\].*hidden 13"),
    "references not an object": (_set_cnn("references", []),
                                 "model 'tiny': field 'references' must be an object, got list"),
    "references without hash": (_set_cnn("references", {"file": "weights/x", "size_bytes": 1, "layers": ["conv1"],
                                                         "k": 8}),
                                "model 'tiny': field 'references.sha256' missing"),
}


@pytest.mark.parametrize("defect", CNN_MANIFEST_DEFECTS.values(), ids=CNN_MANIFEST_DEFECTS.keys())
def test_every_cnn_manifest_defect_names_file_model_and_field(
        cnn_store: Path, defect: tuple[Callable[[dict[str, Any]], None], str]) -> None:
    change, words = defect
    _damage(cnn_store, change)
    with pytest.raises(ModelStoreError, match=re.escape(str(cnn_store / "manifest.json")) + ": " + words):
        load_model("tiny", cnn_store)


def test_an_mlp_entry_naming_its_family_loads_as_before(store: Path) -> None:
    _rewrite_manifest(store, "h16", family="mlp")
    assert load_model("h16", store).fc1.weight.shape == (16, 784)


def test_a_cnn_entry_is_not_loaded_as_an_mlp(store: Path) -> None:
    """The family decides the builder: an MLP's tensors under a cnn entry (shapes recorded to match) are refused."""
    _rewrite_manifest(store, "h16", family="cnn", architecture={"modules": list(CNN_LAYER_NAMES),
                                                                "shapes": output_shapes("cnn", 16)})
    with pytest.raises(ModelStoreError, match=r"h16\.safetensors: model 'h16': tensors \['fc1\.bias', 'fc1\.weight', "
                                              r"'fc2\.bias', 'fc2\.weight'\], expected \['conv1\.bias'"):
        load_model("h16", store)


CNN_TENSOR_DEFECTS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], None], str]] = {
    "conv1 with 6 channels": (lambda state: state.update({"conv1.weight": torch.zeros(6, 1, 5, 5)}),
                              r"conv1\.weight has shape \(6, 1, 5, 5\), expected \(8, 1, 5, 5\)"),
    "conv2 kernel 3": (lambda state: state.update({"conv2.weight": torch.zeros(16, 8, 3, 3)}),
                       r"conv2\.weight has shape \(16, 8, 3, 3\), expected \(16, 8, 5, 5\)"),
    "fc1 wider": (lambda state: state.update({"fc1.weight": torch.zeros(CNN_HIDDEN + 1, 256)}),
                  rf"fc1\.weight has shape \({CNN_HIDDEN + 1}, 256\), expected \({CNN_HIDDEN}, 256\)"),
    "conv1 bias float64": (lambda state: state.update({"conv1.bias": state["conv1.bias"].double()}),
                           r"conv1\.bias has dtype torch\.float64, expected torch\.float32"),
    "conv2 missing": (lambda state: state.pop("conv2.bias"), r"tensors \[.*\], expected \[.*'conv2\.bias'"),
}


@pytest.mark.parametrize("defect", CNN_TENSOR_DEFECTS.values(), ids=CNN_TENSOR_DEFECTS.keys())
def test_every_cnn_tensor_name_shape_and_dtype_is_checked(
        cnn_store: Path, defect: tuple[Callable[[dict[str, torch.Tensor]], None], str]) -> None:
    change, words = defect
    _rewrite_tensors(cnn_store, "tiny", change)
    with pytest.raises(ModelStoreError, match=r"tiny\.safetensors: model 'tiny': " + words):
        load_model("tiny", cnn_store)


def test_cnn_training_run_beats_chance_and_is_deterministic() -> None:
    images, labels = datasets.load_embedded()
    train_set, val_set = datasets.split_embedded(images, labels, n_val=500, seed=0)
    small = (train_set[0][:800], train_set[1][:800])
    config = CnnTrainConfig(hidden=16, epochs=3, augment="mild", ema_decay=0.9)
    first = train_cnn(config, small, val_set, progress=False)
    second = train_cnn(config, small, val_set, progress=False)
    assert first.val_accuracy > 0.5, "10 classes: chance is 0.1"
    for key, value in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[key], value), f"{key} differs between seeded runs"


def test_cli_train_cnn_refuses_what_it_cannot_honour(store: Path) -> None:
    result = _cli("--store", str(store), "train", "--family", "cnn", "--name", "x", "--teacher-hidden", "64")
    assert result.returncode == 2 and "--family cnn is not distilled" in result.stderr
    result = _cli("--store", str(store), "train", "--family", "cnn", "--name", "x", "--data", "mnist-train")
    assert result.returncode == 2 and "embedded digits only" in result.stderr
    assert "x" not in read_manifest(store)["models"]


# ---- the shipped cnn -------------------------------------------------------------------------------------

# The floors for the cnn: >= 99.0 % of the official test set (goal 99.3 %), and its pen-stroke figure
# as recorded at registration, 1,000 redrawn official test digits (goal 98 %).
CNN_TEST_FLOOR = 0.99


def test_shipped_cnn_is_registered_with_its_provenance() -> None:
    entry = read_manifest()["models"]["cnn"]
    assert entry["family"] == "cnn" and read_manifest()["default"] != "cnn"
    assert entry["command"].startswith("python -m model_store train --family cnn ")
    assert entry["training_data"] == {"name": datasets.EMBEDDED_NAME, "n": 5000, "train": 4500, "validation": 500,
                                      "split_seed": 0}
    for key in ("val_accuracy", "val_pen_stroke_accuracy", "test_accuracy", "pen_stroke_accuracy", "train_seconds"):
        assert isinstance(entry[key], (int, float)), key
    assert entry["test_accuracy"] >= CNN_TEST_FLOOR
    assert entry["references"]["composite"] == "EpsilonPlusFlat"
    model = load_model("cnn")
    assert [name for name, _ in model.named_children()] == list(CNN_LAYER_NAMES)
    assert model.fc1.out_features == entry["hidden"] == entry["config"]["hidden"]


@needs_mnist
def test_shipped_cnn_accuracy_on_official_test_set() -> None:
    from model_store.evaluate import evaluate

    images, labels = datasets.load_idx(MNIST_DIR, "test")
    accuracy = evaluate(load_model("cnn"), images, labels)["accuracy"]
    assert accuracy == pytest.approx(read_manifest()["models"]["cnn"]["test_accuracy"], abs=1e-4)
    assert accuracy >= CNN_TEST_FLOOR


@needs_mnist
def test_shipped_cnn_pen_stroke_accuracy_is_the_recorded_one() -> None:
    """The figure in the manifest, re-measured by the same protocol: 1,000 official test digits redrawn as
    strokes through server.raster (the sample test_raster.py draws)."""
    from model_store.evaluate import evaluate, redrawn_test_sample
    from server.raster import rasterize

    images, labels = redrawn_test_sample(*datasets.load_idx(MNIST_DIR, "test"), rasterize)
    accuracy = evaluate(load_model("cnn"), images, labels)["accuracy"]
    assert accuracy == pytest.approx(read_manifest()["models"]["cnn"]["pen_stroke_accuracy"], abs=1e-4)
