"""Train the ``cnn`` family (:func:`~model_store.architecture.build_cnn`) on the embedded digits.

Recipe (the candidates of ``CNN_CANDIDATES.md`` differ only in the fields of
:class:`CnnTrainConfig`): AdamW with a one-cycle learning-rate schedule
(Smith & Topin 2017), cross-entropy with label smoothing (Szegedy et al. 2016,
§7), fresh random augmentation of the whole training set every epoch
(:mod:`model_store.augment`), and an exponential moving average (EMA) of the
weights.  The EMA weights at the end of the schedule are kept (the store's
``select="last"``, see :mod:`model_store.training`): no choice among noisy
validation evaluations; the validation split only compares candidates.

With ``redrawn`` set, every training digit is also redrawn once as pen strokes through the live
pipeline's rasteriser (:func:`model_store.evaluate.redraw`, a seed of its own) and the network trains on
both copies: the visitors' digits are drawn with one even pen, and MNIST's scanned ink is not.
"""

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from .architecture import build_cnn
from .augment import PRESETS, augment
from .evaluate import redraw
from .strokes import Stroke
from .training import accuracy

REDRAW_TRAIN_SEED = 1  # not evaluate.REDRAW_SEED: the validation digits' strokes are drawn under that one


@dataclass(frozen=True)
class CnnTrainConfig:
    """Everything that determines a trained ``cnn`` model, recorded in the manifest."""

    hidden: int = 64
    epochs: int = 60
    seed: int = 0
    augment: str = "affine"
    lr: float = 3e-3  # the one-cycle peak
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    batch_size: int = 64
    ema_decay: float = 0.998
    redrawn: bool = False  # also train on each digit redrawn as pen strokes (module docstring)

    def __post_init__(self) -> None:
        if self.augment not in PRESETS:
            raise ValueError(f"unknown augmentation {self.augment!r}; expected one of {sorted(PRESETS)}")
        if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("hidden, epochs and batch_size must be >= 1")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")


@dataclass
class CnnTrainResult:
    model: nn.Sequential
    val_accuracy: float
    seconds: float


def as_batch(images: np.ndarray) -> torch.Tensor:
    """``(N, 28, 28)`` float images → the ``(N, 1, 28, 28)`` float32 tensor a convolution takes."""
    return torch.from_numpy(images).float().unsqueeze(1)


def train_cnn(
    config: CnnTrainConfig,
    train_set: tuple[np.ndarray, np.ndarray],
    val_set: tuple[np.ndarray, np.ndarray],
    progress: bool = True,
    rasterize: Callable[[Sequence[Stroke]], np.ndarray] | None = None,
) -> CnnTrainResult:
    """Train :func:`build_cnn` ``(config.hidden)`` on ``train_set``; report ``val_set`` accuracy of the result.

    Both sets are ``(images (N, 28, 28) float in [0, 1], labels (N,) int)``.  ``rasterize``
    (``server.raster.rasterize``) is needed exactly when ``config.redrawn`` is set.  Deterministic for a
    given ``config.seed`` on one CPU thread (seeded initialisation, shuffling and augmentation).
    """
    start = time.perf_counter()
    train_images, train_labels = train_set
    if config.redrawn:
        if rasterize is None:
            raise ValueError("config.redrawn needs the server's rasteriser: pass rasterize")
        train_images = np.concatenate([train_images, redraw(train_images, rasterize, REDRAW_TRAIN_SEED)])
        train_labels = np.concatenate([train_labels, train_labels])
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    images, labels = as_batch(train_images), torch.from_numpy(train_labels).long()
    val_images, val_labels = as_batch(val_set[0]), torch.from_numpy(val_set[1]).long()
    preset = PRESETS[config.augment]

    model = build_cnn(config.hidden)
    # torch leaves get_ema_multi_avg_fn unannotated
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))  # type: ignore[no-untyped-call]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = -(-len(labels) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=config.epochs * steps_per_epoch)
    bar = tqdm(range(1, config.epochs + 1), desc="cnn", disable=not progress, unit="epoch")
    for _ in bar:
        model.train()
        batch_images = augment(images, preset, generator)
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for begin in range(0, len(labels), config.batch_size):
            index = order[begin:begin + config.batch_size]
            loss = F.cross_entropy(model(batch_images[index]), labels[index], label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)  # what loss.backward() calls; Tensor.backward is unannotated
            optimizer.step()
            schedule.step()
            ema.update_parameters(model)
            total += loss.item() * len(index)
        bar.set_postfix(loss=f"{total / len(labels):.4f}")

    result = build_cnn(config.hidden)
    result.load_state_dict(ema.module.state_dict())
    result.eval()
    return CnnTrainResult(result, accuracy(result, val_images, val_labels), time.perf_counter() - start)
