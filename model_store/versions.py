"""Versions of a model in the store: promote a fine-tuned one with its provenance, roll back to its parent.

A model keeps its name; each promoted version gets its own weights file
(``weights/<name>-r<round>-<sha12>.safetensors``) and replaces the name's manifest
entry, which keeps the previous entry whole under ``parent`` (and so on down),
with ``round`` and ``provenance`` (which drawings, which held-out sets, the
evaluations).  Older weights files are never deleted: ``rollback`` restores the
parent entry exactly, and its file still matches its recorded sha256.
"""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import safetensors.torch
from torch import nn

from .manifest import MANIFEST_NAME, WEIGHTS_DIR, ModelStoreError, read_manifest, sha256_of, store_dir_from_env
from .store import _atomic_write, library_versions

# Fields that describe one set of weights: a new version does not inherit them from its parent.
VERSION_FIELDS = ("file", "sha256", "size_bytes", "created", "libraries", "round", "parent", "provenance",
                  "val_accuracy", "test_accuracy", "best_epoch", "train_seconds")


def _write_manifest(store_dir: Path, manifest: dict[str, Any]) -> None:
    _atomic_write(store_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def promote(model: nn.Module, name: str, details: dict[str, Any], store_dir: Path | None = None) -> dict[str, Any]:
    """Save ``model`` as the next version of ``name``; ``details`` (provenance, accuracies) join its entry.

    Returns the new entry.  Raises :class:`ModelStoreError` for an unknown name.
    """
    store_dir = store_dir or store_dir_from_env()
    manifest = read_manifest(store_dir)
    if name not in manifest["models"]:
        raise ModelStoreError(f"unknown model {name!r}; the store holds: {', '.join(manifest['models'])}")
    parent = manifest["models"][name]
    version = int(parent.get("round", 0)) + 1
    state = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    data = safetensors.torch.save(state)
    digest = sha256_of(data)
    relative = f"{WEIGHTS_DIR}/{name}-r{version}-{digest[:12]}.safetensors"
    _atomic_write(store_dir / relative, data)
    entry = {**{key: value for key, value in parent.items() if key not in VERSION_FIELDS},
             "file": relative, "sha256": digest, "size_bytes": len(data),
             "created": datetime.now(UTC).isoformat(timespec="seconds"), "libraries": library_versions(),
             "round": version, "parent": parent, **details}
    manifest["models"][name] = entry
    _write_manifest(store_dir, manifest)
    return entry


def history(name: str, store_dir: Path | None = None) -> list[dict[str, Any]]:
    """The versions of ``name``, current first, down to the one never fine-tuned here: each entry without its
    ``parent`` (the list is the chain)."""
    entry: Any = read_manifest(store_dir or store_dir_from_env())["models"].get(name)
    if entry is None:
        raise ModelStoreError(f"unknown model {name!r}")
    chain = []
    while isinstance(entry, dict):
        chain.append({key: value for key, value in entry.items() if key != "parent"})
        entry = entry.get("parent")
    return chain


def rollback(name: str, store_dir: Path | None = None) -> dict[str, Any]:
    """Make ``name``'s parent version current again; returns it.  Raises :class:`ModelStoreError` if the
    current version has no parent (it was never fine-tuned here)."""
    store_dir = store_dir or store_dir_from_env()
    manifest = read_manifest(store_dir)
    if name not in manifest["models"]:
        raise ModelStoreError(f"unknown model {name!r}; the store holds: {', '.join(manifest['models'])}")
    parent = manifest["models"][name].get("parent")
    if not isinstance(parent, dict):
        raise ModelStoreError(f"model {name!r} has no parent version to roll back to")
    manifest["models"][name] = parent
    _write_manifest(store_dir, manifest)
    return dict(parent)
