"""Trained MNIST models with provenance, loaded only after verification."""

from .architecture import LAYER_NAMES, build_model
from .store import ModelStoreError, load_model, model_names, model_record, read_manifest

__all__ = [
    "LAYER_NAMES",
    "ModelStoreError",
    "build_model",
    "load_model",
    "model_names",
    "model_record",
    "read_manifest",
]
