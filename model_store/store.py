"""The model store: a manifest plus one safetensors file per model; loading and registering.

Loading checks, in this order, before any byte is deserialised: the manifest
(:mod:`model_store.manifest`: every field's type and range), the name is in
it, its file stays inside ``weights/`` (no ``..``, no absolute path, no
symlink, ``weights/`` itself no symlink), the file has the recorded size and
SHA-256.  Only then does ``safetensors`` parse it (a format whose loading
cannot run code), and every tensor must have the name, shape and dtype that
the builder of the entry's family (:func:`~model_store.architecture.build`:
``mlp`` when the entry names none, or ``cnn``) gives the manifest's ``hidden``
width.
"""

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from .architecture import build, hidden_width
from .families import MLP, family_of, module_names, output_shapes
from .manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    WEIGHTS_DIR,
    ModelStoreError,
    model_record,
    read_manifest,
    sha256_of,
    store_dir_from_env,
    verified_bytes,
    weights_path,
)
from .sizes import INPUT_SIZE, N_CLASSES

TENSOR_DTYPE = torch.float32


def _state_from_bytes(path: Path, record: dict[str, Any], data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of ``data``, each checked against the layout the family's builder gives ``hidden``."""
    where = f"{path}: model {record['name']!r}"
    try:
        state = safetensors.torch.load(data)
    except (SafetensorError, ValueError) as error:
        raise ModelStoreError(f"{path}: not a valid safetensors file ({error})") from error
    hidden = record["hidden"]
    shapes = {key: tuple(value.shape) for key, value in build(family_of(record), hidden).state_dict().items()}
    if set(state) != set(shapes):
        raise ModelStoreError(f"{where}: tensors {sorted(state)}, expected {sorted(shapes)}")
    for key, shape in shapes.items():
        if tuple(state[key].shape) != shape:
            raise ModelStoreError(f"{where}: {key} has shape {tuple(state[key].shape)}, expected {shape} "
                                  f"(manifest field 'hidden' is {hidden})")
        if state[key].dtype != TENSOR_DTYPE:
            raise ModelStoreError(f"{where}: {key} has dtype {state[key].dtype}, expected {TENSOR_DTYPE}")
    return state


def load_model(name: str | None = None, store_dir: Path | None = None) -> nn.Sequential:
    """Load a verified model in eval mode; ``name=None`` loads the default model.

    Returns the plain ``Sequential`` of the entry's family (:mod:`model_store.architecture`).
    Raises :class:`ModelStoreError` (a ``ValueError``) for a manifest defect,
    an unknown name, a path that escapes the store, a missing, truncated or
    tampered file, or tensors that do not fit the architecture of the
    manifest's family and ``hidden`` width; never returns a half-loaded model.
    """
    store_dir = store_dir or store_dir_from_env()
    record = model_record(name, store_dir)
    path = weights_path(store_dir, record["file"])
    state = _state_from_bytes(path, record, verified_bytes(path, record))
    model = build(family_of(record), record["hidden"])
    model.load_state_dict(state, strict=True)
    return model.eval()


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide the file from a server running as another user
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def library_versions() -> dict[str, str]:
    import numpy
    import safetensors as st

    return {"torch": torch.__version__, "numpy": numpy.__version__, "safetensors": st.__version__}


def _architecture(family: str, hidden: int) -> dict[str, Any]:
    """The manifest fields that describe a network of ``family``: an MLP's as the store always wrote them
    (no ``family`` field: older readers see an unchanged entry), any other family named, with each
    module's output shape."""
    if family == MLP:
        return {"architecture": {"layers": [INPUT_SIZE, hidden, N_CLASSES], "modules": list(module_names(MLP))}}
    return {"family": family,
            "architecture": {"modules": list(module_names(family)), "shapes": output_shapes(family, hidden)}}


def register_model(
    model: nn.Sequential,
    name: str,
    details: dict[str, Any],
    store_dir: Path | None = None,
    make_default: bool = False,
    family: str = MLP,
) -> dict[str, Any]:
    """Save ``model`` (a network of ``family``) as ``weights/<name>.safetensors`` and record it in the manifest.

    ``details`` (training data, config, accuracies, command) is merged into the
    entry.  Returns the new manifest entry.
    """
    if not name or not all(ch.isalnum() or ch in "-_" for ch in name):
        raise ModelStoreError(f"model name {name!r}: use letters, digits, '-' and '_' only")
    store_dir = store_dir or store_dir_from_env()
    manifest_path = store_dir / MANIFEST_NAME
    manifest: dict[str, Any] = read_manifest(store_dir) if manifest_path.exists() else {
        "format": MANIFEST_FORMAT, "default": name, "models": {}}
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    data = safetensors.torch.save(state)
    relative = f"{WEIGHTS_DIR}/{name}.safetensors"
    _atomic_write(store_dir / relative, data)
    entry = {
        "file": relative,
        "sha256": sha256_of(data),
        "size_bytes": len(data),
        **_architecture(family, hidden_width(state)),
        "hidden": hidden_width(state),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "libraries": library_versions(),
        **details,
    }
    manifest["models"][name] = entry
    if make_default:
        manifest["default"] = name
    _atomic_write(manifest_path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return {"name": name, **entry}


def record_references(name: str, data: bytes, details: dict[str, Any], store_dir: Path | None = None) -> dict[str, Any]:
    """Write ``data`` (a references file, :mod:`model_store.references`) as ``weights/<name>.references.safetensors``
    and set model ``name``'s ``references`` to its file, SHA-256, size and ``details``; return that object."""
    store_dir = store_dir or store_dir_from_env()
    manifest = read_manifest(store_dir)
    if name not in manifest["models"]:
        raise ModelStoreError(f"unknown model {name!r}: register it before its references")
    relative = f"{WEIGHTS_DIR}/{name}.references.safetensors"
    _atomic_write(store_dir / relative, data)
    references = {"file": relative, "sha256": sha256_of(data), "size_bytes": len(data), **details}
    manifest["models"][name]["references"] = references
    _atomic_write(store_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return references
