"""Trained MNIST models with provenance, loaded only after verification.

The names below are imported on first use (PEP 562), so that importing
:mod:`model_store.manifest` does not import torch: the server's supervisor
checks the store without loading it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .architecture import LAYER_NAMES, build_model
    from .manifest import ModelStoreError, model_names, model_record, read_manifest
    from .references import References, load_references
    from .store import load_model

_MODULE_OF = {
    "LAYER_NAMES": "architecture",
    "build_model": "architecture",
    "ModelStoreError": "manifest",
    "model_names": "manifest",
    "model_record": "manifest",
    "read_manifest": "manifest",
    "load_model": "store",
    "load_references": "references",
    "References": "references",
}
__all__ = ["LAYER_NAMES", "ModelStoreError", "References", "build_model", "load_model", "load_references",
           "model_names", "model_record", "read_manifest"]  # a literal, for linters: the keys of _MODULE_OF


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
