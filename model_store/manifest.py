"""The model store's manifest and checkpoint files, checked without torch.

An entry names its family (``"family": "cnn"``; none: ``"mlp"``, see :mod:`model_store.families`).

Reading the manifest checks every field the loader and the server use (type,
range, and that the default names a model): a defect is a
:class:`ModelStoreError` naming the manifest, the model and the field.
:func:`verify_files` also checks each checkpoint's path (inside ``weights/``,
no symlink), size and SHA-256, so that a process that never loads a model
(the server's supervisor) can refuse a broken store.  Deserialising and the
tensor checks are in :mod:`model_store.store`.
"""

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from .families import FAMILIES, MLP, family_of, module_names, output_shapes
from .sizes import INPUT_SIZE, N_CLASSES

STORE_DIR = Path(__file__).resolve().parent
MANIFEST_NAME = "manifest.json"
WEIGHTS_DIR = "weights"
MANIFEST_FORMAT = 1
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
# The fields of a model entry that code reads: name → (accepted types, required, what to call them).
# Other fields (training details, provenance) are free-form.  A ``cnn`` entry must also describe its
# architecture (modules and shapes: _check_architecture); ``references`` (model_store.references) has
# the fields of REFERENCE_FIELDS.
MODEL_FIELDS: dict[str, tuple[tuple[type, ...], bool, str]] = {
    "file": ((str,), True, "a string"),
    "sha256": ((str,), True, "a string"),
    "size_bytes": ((int,), True, "an integer"),
    "hidden": ((int,), True, "an integer"),
    "family": ((str,), False, "a string"),
    "architecture": ((dict,), False, "an object"),
    "references": ((dict,), False, "an object"),
    "val_accuracy": ((int, float, type(None)), False, "a number or null"),
    "test_accuracy": ((int, float, type(None)), False, "a number or null"),
}


REFERENCE_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "file": ((str,), "a string"),
    "sha256": ((str,), "a string"),
    "size_bytes": ((int,), "an integer"),
    "layers": ((list,), "a list"),
    "k": ((int,), "an integer"),
}


class ModelStoreError(ValueError):
    """A model could not be loaded or registered; the message names file and cause."""


def store_dir_from_env() -> Path:
    """``MODEL_STORE_DIR`` if set, else the store shipped inside this package."""
    value = os.environ.get("MODEL_STORE_DIR", "").strip()
    return Path(value).resolve() if value else STORE_DIR


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(store_dir: Path | None = None) -> dict[str, Any]:
    """The parsed manifest of ``store_dir`` (default: :func:`store_dir_from_env`)."""
    path = (store_dir or store_dir_from_env()) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ModelStoreError(f"{path}: manifest missing") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelStoreError(f"{path}: manifest unreadable ({error})") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise ModelStoreError(f"{path}: manifest has no 'models' table")
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Raise :class:`ModelStoreError` naming ``path`` and the field at the first defect of ``manifest``."""
    if "format" not in manifest:
        raise ModelStoreError(f"{path}: field 'format' missing")
    if manifest["format"] != MANIFEST_FORMAT or isinstance(manifest["format"], bool):
        raise ModelStoreError(f"{path}: field 'format' is {manifest['format']!r}, expected {MANIFEST_FORMAT}")
    default = manifest.get("default")
    if default is None:
        raise ModelStoreError(f"{path}: field 'default' missing")
    if not isinstance(default, str) or default not in manifest["models"]:
        raise ModelStoreError(f"{path}: field 'default' names {default!r}, which is not in 'models'")
    for name, entry in manifest["models"].items():
        _check_entry(f"{path}: model {name!r}", entry)


def _check_entry(where: str, entry: Any) -> None:
    """Raise :class:`ModelStoreError` prefixed ``where`` at the first defect of one model's entry."""
    if not isinstance(entry, dict):
        raise ModelStoreError(f"{where}: entry must be an object, got {type(entry).__name__}")
    for key, (types, required, kind) in MODEL_FIELDS.items():
        if key not in entry:
            if required:
                raise ModelStoreError(f"{where}: field {key!r} missing")
            continue
        value = entry[key]
        if not isinstance(value, types) or isinstance(value, bool):  # JSON true is not a number here
            raise ModelStoreError(f"{where}: field {key!r} must be {kind}, got {type(value).__name__}")
    if not SHA256_PATTERN.fullmatch(entry["sha256"]):
        raise ModelStoreError(f"{where}: field 'sha256' must be 64 hex digits (lower case)")
    for key, low in (("size_bytes", 0), ("hidden", 1)):
        if entry[key] < low:
            raise ModelStoreError(f"{where}: field {key!r} must be >= {low}")
    family = family_of(entry)
    if family not in FAMILIES:
        raise ModelStoreError(f"{where}: field 'family' is {family!r}, expected one of {', '.join(FAMILIES)}")
    if family == MLP:
        layers = entry.get("architecture", {}).get("layers")
        expected = [INPUT_SIZE, entry["hidden"], N_CLASSES]
        if layers is not None and layers != expected:
            raise ModelStoreError(f"{where}: field 'architecture.layers' is {layers!r}, expected {expected}")
    else:
        _check_architecture(where, family, entry)
    if "references" in entry:
        _check_references(where, entry["references"])


def _check_architecture(where: str, family: str, entry: dict[str, Any]) -> None:
    """A family other than the MLP must record its ``modules`` and each one's output ``shapes``."""
    architecture = entry.get("architecture")
    if architecture is None:
        raise ModelStoreError(f"{where}: field 'architecture' missing (required for family {family!r})")
    expected: dict[str, Any] = {"modules": list(module_names(family)),
                                "shapes": output_shapes(family, entry["hidden"])}
    for key, value in expected.items():
        if architecture.get(key) != value:
            raise ModelStoreError(f"{where}: field 'architecture.{key}' is {architecture.get(key)!r}, "
                                  f"expected {value!r} (family {family!r}, hidden {entry['hidden']})")


def _check_references(where: str, references: dict[str, Any]) -> None:
    """The fields of a ``references`` object that the loader reads, each of its type."""
    for key, (types, kind) in REFERENCE_FIELDS.items():
        if key not in references:
            raise ModelStoreError(f"{where}: field 'references.{key}' missing")
        value = references[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise ModelStoreError(f"{where}: field 'references.{key}' must be {kind}, got {type(value).__name__}")
    if not SHA256_PATTERN.fullmatch(references["sha256"]):
        raise ModelStoreError(f"{where}: field 'references.sha256' must be 64 hex digits (lower case)")
    if references["k"] < 1 or references["size_bytes"] < 0:
        raise ModelStoreError(f"{where}: field 'references.k' must be >= 1 and 'references.size_bytes' >= 0")
    if not references["layers"] or not all(isinstance(layer, str) for layer in references["layers"]):
        raise ModelStoreError(f"{where}: field 'references.layers' must be a non-empty list of layer names")


def model_names(store_dir: Path | None = None) -> list[str]:
    return sorted(read_manifest(store_dir)["models"])


def model_record(name: str | None = None, store_dir: Path | None = None) -> dict[str, Any]:
    """The manifest entry of ``name`` (``None``: the default model), with ``name`` set."""
    manifest = read_manifest(store_dir)
    name = manifest.get("default") if name is None else name
    if name not in manifest["models"]:
        known = ", ".join(sorted(manifest["models"])) or "none"
        raise ModelStoreError(f"unknown model {name!r}; the store holds: {known}")
    return {"name": name, **manifest["models"][name]}


def weights_path(store_dir: Path, relative: str) -> Path:
    """Resolve a manifest file entry, refusing anything that leaves ``weights/``.

    The store directory itself may be reached through a symlink (e.g. a
    mounted volume); ``weights/`` and the file inside it may not.
    """
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not relative or pure.parts[0] != WEIGHTS_DIR:
        raise ModelStoreError(f"{relative!r}: checkpoint path escapes the store's {WEIGHTS_DIR}/ folder")
    root = store_dir.resolve() / WEIGHTS_DIR
    if root.resolve() != root:
        raise ModelStoreError(f"{root}: the weights folder is a symlink (to {root.resolve()}); "
                              "checkpoints must lie inside the store")
    path = root.joinpath(*pure.parts[1:])
    if path.is_symlink() or path.resolve().parent != root:
        raise ModelStoreError(f"{path}: checkpoint is a symlink or lies outside {root}")
    return path


def verified_bytes(path: Path, record: dict[str, Any]) -> bytes:
    """The bytes of checkpoint ``path``, after checking its size and SHA-256 against ``record``
    (a model's entry, or its ``references`` object)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise ModelStoreError(f"{path}: checkpoint file missing") from error
    except OSError as error:
        raise ModelStoreError(f"{path}: checkpoint unreadable ({error})") from error
    if len(data) != record["size_bytes"]:
        raise ModelStoreError(
            f"{path}: size {len(data)} bytes, manifest says {record['size_bytes']} (truncated or replaced)"
        )
    digest = sha256_of(data)
    if digest != record["sha256"]:
        raise ModelStoreError(f"{path}: SHA-256 {digest} does not match the manifest (tampered or corrupt)")
    return data


def verify_files(name: str | None = None, store_dir: Path | None = None) -> list[str]:
    """Check the manifest, that model ``name`` is in it (``None``: the default), and every checkpoint's
    and reference file's path, size and SHA-256, deserialising nothing; return the model names.
    Raises :class:`ModelStoreError`."""
    store_dir = store_dir or store_dir_from_env()
    model_record(name, store_dir)
    names = model_names(store_dir)
    for model in names:
        record = model_record(model, store_dir)
        verified_bytes(weights_path(store_dir, record["file"]), record)
        if "references" in record:
            verified_bytes(weights_path(store_dir, record["references"]["file"]), record["references"])
    return names
