"""A training round: fine-tune the serving model on the embedded digits plus visitors' confirmed drawings,
evaluate it against the serving version on fixed held-out sets, and promote it only if no set drops
beyond its noise.

Held-out sets, fixed across rounds:

* ``embedded_validation``: the 500 embedded digits ``split_embedded(seed=0)`` holds out (the shipped models'
  own validation split; never trained on).
* ``visitor_held_out``: every confirmed visitor drawing whose id is a multiple of ``HELD_OUT_EVERY``: a
  drawing is held out in every round or in none, so it never trains.
* ``official_test``: the official MNIST test set, where ``MNIST_DIR`` holds it (only measured).

Noise: both versions read the same digits, so the change is judged paired (McNemar): with ``b`` digits only
the old version reads right and ``c`` only the new one, the change ``(c − b) / n`` has standard error
``√(b + c) / n`` under "no difference".  A set blocks promotion when its accuracy drops by more than
``NOISE_Z`` of those.

Pure apart from torch: the caller gives the drawings and the store operations (:mod:`model_store.versions`).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .augment import PRESETS, augment
from .evaluate import evaluate

HELD_OUT_EVERY = 5  # drawing ids divisible by this are held out (20 %)
NOISE_Z = 2.0  # a drop beyond this many paired standard errors blocks promotion


@dataclass(frozen=True)
class LabelledDrawing:
    """A visitor drawing as training data: its row id, the ``(28, 28)`` float32 raster, its final label."""

    id: int
    image: np.ndarray
    label: int


@dataclass(frozen=True)
class RoundConfig:
    """The fine-tuning recipe: ``epochs`` over the embedded training digits plus the visitor drawings
    (repeated so they make about ``visitor_share`` of an epoch, at most ``max_repeat`` times each), AdamW at
    ``lr``, augmentation preset ``augment``, a fixed ``seed``."""

    epochs: int = 20
    lr: float = 2e-4
    batch_size: int = 128
    augment: str = "mild"
    visitor_share: float = 0.25
    max_repeat: int = 8
    seed: int = 0


def held_out(drawing_id: int) -> bool:
    return drawing_id % HELD_OUT_EVERY == 0


def split_visitors(drawings: Sequence[LabelledDrawing]) -> tuple[list[LabelledDrawing], list[LabelledDrawing]]:
    """(train, held out) by id: the same drawing always falls on the same side."""
    return [d for d in drawings if not held_out(d.id)], [d for d in drawings if held_out(d.id)]


def stack(drawings: Sequence[LabelledDrawing]) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 28, 28)`` float32 images and ``(N,)`` int64 labels."""
    if not drawings:
        return np.zeros((0, 28, 28), np.float32), np.zeros(0, np.int64)
    return (np.stack([d.image for d in drawings]).astype(np.float32),
            np.array([d.label for d in drawings], dtype=np.int64))


def fine_tune(model: nn.Module, embedded: tuple[np.ndarray, np.ndarray], visitors: tuple[np.ndarray, np.ndarray],
              config: RoundConfig) -> nn.Module:
    """Train ``model`` (modified in place, returned in eval mode) on both sets; the last epoch is kept (no
    held-out set chooses anything)."""
    repeat = 0
    if len(visitors[1]):
        repeat = int(min(config.max_repeat, max(1, round(config.visitor_share * len(embedded[1]) / len(visitors[1])))))
    images = np.concatenate([embedded[0], *([visitors[0]] * repeat)])
    labels = np.concatenate([embedded[1], *([visitors[1]] * repeat)])
    x, y = torch.from_numpy(images).float().unsqueeze(1), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(config.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), config.batch_size):
            batch = order[start:start + config.batch_size]
            inputs = augment(x[batch], PRESETS[config.augment], generator).squeeze(1)
            loss = F.cross_entropy(model(inputs), y[batch])
            optimiser.zero_grad()
            torch.autograd.backward(loss)  # what loss.backward() calls; Tensor.backward is unannotated
            optimiser.step()
    return model.eval()


def predictions(model: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.asarray(model(torch.from_numpy(images).float()).argmax(1).numpy())


def compare(old: nn.Module, new: nn.Module, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Both versions on one held-out set: accuracies, the paired noise, whether it blocks, per-class accuracy
    and confusion matrices (``confusion[true][predicted]``)."""
    before, after = evaluate(old, images, labels), evaluate(new, images, labels)
    n = len(labels)
    old_right, new_right = predictions(old, images) == labels, predictions(new, images) == labels
    discordant = int((old_right != new_right).sum())
    noise = NOISE_Z * float(np.sqrt(discordant)) / n if n else 0.0
    change = after["accuracy"] - before["accuracy"]
    return {
        "n": n, "before": round(before["accuracy"], 4), "after": round(after["accuracy"], 4),
        "change": round(change, 4), "noise": round(noise, 4), "blocked": bool(n and change < -noise),
        "per_class_before": per_class(before["confusion"]), "per_class_after": per_class(after["confusion"]),
        "confusion_before": before["confusion"], "confusion_after": after["confusion"],
    }


def per_class(confusion: list[list[int]]) -> list[float | None]:
    """Accuracy of each true class (``None`` for a class the set does not hold)."""
    return [round(row[c] / sum(row), 4) if sum(row) else None for c, row in enumerate(confusion)]


def blocked_by(evaluations: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, result in evaluations.items() if result["blocked"]]
