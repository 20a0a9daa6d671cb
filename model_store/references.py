"""Reference samples of a CNN's concepts, computed when it is trained and stored beside its weights.

RelMax and ActMax as zennit-crp 0.6.0 defines them (Achtibat et al. 2023, "From attribution maps to
human-understandable explanations through Concept Relevance Propagation", §4.2;
``crp.visualization.FeatureVisualization.run`` with ``crp.concepts.ChannelConcept.reference_sampling``
and ``crp.maximization.Maximization``), computed with ``CondAttribution`` directly
(``crp.visualization`` imports torchvision, which must not be imported here):

1. Every training digit ``x`` is explained for its own label ``y``
   (``CondAttribution(x, [{"y": [y]}], composite, record_layer=layers, exclude_parallel=False)``).
   A layer's relevance is the relevance at its output, its activation the output itself (a conv
   layer's before its ReLU).
2. Per sample and channel: the maximum over spatial positions (``max_target="max"``), and the
   position of the maximum, "the receptive-field neuron".  Each sample's channel vector is divided
   by the sum of its absolute values over channels (``abs_norm=True``, FeatureVisualization's default).
3. Per channel, the ``k`` samples with the largest score, over the whole set (zennit-crp sorts each
   batch and merges).
4. For each reference sample, the conditional heatmap zennit-crp draws for it
   (``get_max_reference(..., composite, rf=True)``): relevance started at the layer from the activation of
   the receptive-field neuron alone (``start_layer``, ``ChannelConcept.mask_rf``) and propagated to the
   pixels, summed over the input channel.
5. The patch: the digit cropped to the geometric receptive field of that neuron (5 × 5 for ``conv1``,
   14 × 14 for ``conv2``, the whole digit for a linear unit).  zennit-crp crops its image where the
   blurred single-neuron heatmap exceeds 10 % of its maximum (``crp.image.get_crop_range``); that heatmap
   is zero outside the receptive field, and its 19-pixel blur, made for 224-pixel images, would spread
   over all of a 28-pixel digit: the receptive field is the exact, fixed-size support.

The file (safetensors) holds, for each ``layer`` and ``kind`` (``relevance``, ``activation``), tensors
named ``"{layer}.{kind}.{field}"`` with ``C`` channels (units) and ``k`` samples each, best first:

- ``index`` int64 ``(C, k)``: the sample's index in the embedded digits (``datasets.load_embedded``);
- ``score`` float32 ``(C, k)``: the normalised maximum of step 2;
- ``neuron`` int64 ``(C, k)``: the flat position of the receptive-field neuron in the channel's map (0 for a
  linear unit);
- ``box`` int64 ``(C, k, 4)``: that neuron's receptive field in the 28 × 28 digit, ``top, left, bottom,
  right`` pixels (bottom and right exclusive);
- ``patch`` uint8 ``(C, k, h, w)``: the digit's pixels in the box, times 255 (the embedded digits' own
  integer values; :func:`load_references` returns them in [0, 1]);
- ``heatmap`` float16 ``(C, k, 28, 28)``: the conditional heatmap of step 4 (half precision: a display
  quantity, and it halves the file).
"""

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy
import torch
from safetensors import SafetensorError
from torch import nn

from .architecture import build
from .families import family_of
from .manifest import ModelStoreError, model_record, store_dir_from_env, verified_bytes, weights_path
from .sizes import IMAGE_PX

REFERENCE_LAYERS = ("conv1", "conv2", "fc1")
KINDS = ("relevance", "activation")
TOP_K = 8
COMPOSITE = "EpsilonPlusFlat"  # zennit's composite for CRP's reference samples in zennit-crp's examples
MAX_TARGET = "max"
ABS_NORM = True
FIELDS = ("index", "score", "neuron", "box", "patch", "heatmap")
DTYPES = {"index": np.int64, "score": np.float32, "neuron": np.int64, "box": np.int64, "patch": np.uint8,
          "heatmap": np.float16}
BATCH = 250  # digits per CondAttribution call while sampling


@dataclass(frozen=True)
class References:
    """One layer's reference samples of one kind (RelMax or ActMax), ``C`` channels × ``k`` samples, best first.

    ``index`` int64 ``(C, k)`` into the embedded digits; ``score`` float32 ``(C, k)``; ``neuron`` int64
    ``(C, k)``; ``box`` int64 ``(C, k, 4)`` (top, left, bottom, right; exclusive ends); ``patch`` float32
    ``(C, k, h, w)`` pixels in [0, 1]; ``heatmap`` float32 ``(C, k, 28, 28)``, any sign.
    """

    index: np.ndarray
    score: np.ndarray
    neuron: np.ndarray
    box: np.ndarray
    patch: np.ndarray
    heatmap: np.ndarray


def composite() -> Any:
    """A fresh :data:`COMPOSITE` (zennit's ``EpsilonPlusFlat``: ε for dense layers, z⁺ for convolutions,
    flat for the first layer)."""
    from zennit.composites import EpsilonPlusFlat

    return EpsilonPlusFlat()


def _attribution(model: nn.Module) -> Any:
    """A ``CondAttribution`` on a copy of ``model`` (it switches the gradients of the model it gets off)."""
    from crp.attribution import CondAttribution

    return CondAttribution(copy.deepcopy(model).eval())


def receptive_box(model: nn.Sequential, layer: str, neuron: int) -> tuple[int, int, int, int]:
    """The input pixels (top, left, bottom, right; exclusive ends) that reach flat position ``neuron`` of
    ``layer``'s output map; the whole image for a layer after ``flatten``.

    Walks back from ``layer`` through the convolutions (stride 1, no padding: ``k - 1`` more pixels) and
    max-pools (window = stride ``p``: ``p`` times the span).
    """
    modules = list(model.named_children())
    names = [name for name, _ in modules]
    before = modules[:names.index(layer) + 1]
    if any(isinstance(module, nn.Flatten) for _, module in before):
        return 0, 0, IMAGE_PX, IMAGE_PX
    width = _map_width(before)
    row, col = divmod(neuron, width)
    top, left, bottom, right = row, col, row + 1, col + 1
    for _, module in reversed(before):
        if isinstance(module, nn.Conv2d):
            grow = int(module.kernel_size[0]) - 1
            bottom, right = bottom + grow, right + grow
        elif isinstance(module, nn.MaxPool2d):
            pool = int(module.kernel_size) if isinstance(module.kernel_size, int) else int(module.kernel_size[0])
            top, left, bottom, right = top * pool, left * pool, bottom * pool, right * pool
    return top, left, bottom, right


def _map_width(modules: list[tuple[str, nn.Module]]) -> int:
    """The side of the square map after ``modules`` (convolutions and pools of the cnn family)."""
    side = IMAGE_PX
    for _, module in modules:
        if isinstance(module, nn.Conv2d):
            side -= int(module.kernel_size[0]) - 1
        elif isinstance(module, nn.MaxPool2d):
            side //= int(module.kernel_size) if isinstance(module.kernel_size, int) else int(module.kernel_size[0])
    return side


def channel_scores(relevance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample and channel, zennit-crp's score and receptive-field neuron of ``relevance`` (or activation)
    ``(B, C, ...)``: ``ChannelConcept.reference_sampling`` with ``max_target="max"``, ``abs_norm=True``,
    before its sort.  Returns ``(score (B, C) float, neuron (B, C) int64)``."""
    flat = relevance.reshape(*relevance.shape[:2], -1)
    neuron = torch.argmax(flat, dim=-1)
    score = torch.gather(flat, -1, neuron.unsqueeze(-1)).squeeze(-1)
    if ABS_NORM:
        score = score / (torch.abs(score).sum(-1).view(-1, 1) + 1e-10)
    return score, neuron


def _top_k(score: torch.Tensor, neuron: torch.Tensor, index: torch.Tensor,
           k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` best rows per channel of ``score`` ``(N, C)`` with their ``neuron`` and sample ``index``
    ``(N, C)``, as ``(k, C)`` each (``Maximization.sort_result_array``; stable, so ties keep data order)."""
    order = torch.argsort(score, dim=0, descending=True, stable=True)[:k]
    return torch.gather(score, 0, order), torch.gather(neuron, 0, order), torch.gather(index, 0, order)


def sample(model: nn.Sequential, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
           k: int = TOP_K) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """RelMax and ActMax (steps 1–3) over ``images`` ``(N, 28, 28)`` in [0, 1] with ``labels`` ``(N,)``.

    ``indices`` ``(N,)`` name the samples in the results.  Returns ``{layer: {kind: (score, neuron,
    index)}}``, each ``(C, k)``, best first.
    """
    attribution = _attribution(model)
    rules = composite()
    best: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
    for begin in range(0, len(labels), BATCH):
        data = torch.from_numpy(images[begin:begin + BATCH]).float().unsqueeze(1).requires_grad_()
        conditions = [{"y": [int(label)]} for label in labels[begin:begin + BATCH]]
        result = attribution(data, conditions, rules, record_layer=list(REFERENCE_LAYERS), exclude_parallel=False)
        batch_index = torch.from_numpy(indices[begin:begin + BATCH]).long()
        for layer in REFERENCE_LAYERS:
            for kind, values in (("relevance", result.relevances[layer]), ("activation", result.activations[layer])):
                score, neuron = channel_scores(values)
                found = _top_k(score, neuron, batch_index.view(-1, 1).expand_as(score), k)
                if layer in best and kind in best[layer]:
                    (old_score, old_neuron, old_index), (new_score, new_neuron, new_index) = best[layer][kind], found
                    found = _top_k(torch.cat([old_score, new_score]), torch.cat([old_neuron, new_neuron]),
                                   torch.cat([old_index, new_index]), k)
                best.setdefault(layer, {})[kind] = found
    return {layer: {kind: (score.T.contiguous(), neuron.T.contiguous(), index.T.contiguous())
                    for kind, (score, neuron, index) in kinds.items()} for layer, kinds in best.items()}


def neuron_heatmaps(model: nn.Sequential, layer: str, channel: int, images: torch.Tensor,
                    neurons: list[int]) -> torch.Tensor:
    """Step 4: the heatmaps ``(n, 28, 28)`` of ``images`` ``(n, 1, 28, 28)``, each for its receptive-field
    neuron ``neurons[i]`` of ``channel`` in ``layer`` (``FeatureVisualization._attribution_on_reference``
    with ``rf=True``)."""
    from crp.concepts import ChannelConcept

    conditions = [{layer: {channel: neuron}} for neuron in neurons]
    result = _attribution(model)(images.clone().requires_grad_(), conditions, composite(),
                                 mask_map=ChannelConcept.mask_rf, start_layer=layer, exclude_parallel=False)
    heatmap: torch.Tensor = result.heatmap.detach()  # crp is untyped
    return heatmap


def compute_references(model: nn.Sequential, images: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                       k: int = TOP_K) -> dict[str, np.ndarray]:
    """Every tensor of the references file (module docstring) for ``model`` over ``images``.

    ``images`` ``(N, 28, 28)`` float32 in [0, 1], ``labels`` ``(N,)`` int, ``indices`` ``(N,)`` the samples'
    indices in the embedded digits.
    """
    where = {int(index): position for position, index in enumerate(indices)}
    tensors: dict[str, np.ndarray] = {}
    for layer, kinds in sample(model, images, labels, indices, k).items():
        for kind, (score, neuron, index) in kinds.items():
            channels = score.shape[0]
            boxes = [[receptive_box(model, layer, int(n)) for n in row] for row in neuron]
            digits = images[[[where[int(i)] for i in row] for row in index]]  # (C, k, 28, 28)
            heat = torch.stack([neuron_heatmaps(model, layer, c, torch.from_numpy(digits[c]).unsqueeze(1),
                                                [int(n) for n in neuron[c]]) for c in range(channels)])
            patches = np.stack([np.stack([digits[c, j, t:b, lf:r] for j, (t, lf, b, r) in enumerate(boxes[c])])
                                for c in range(channels)])
            prefix = f"{layer}.{kind}"
            tensors.update({
                f"{prefix}.index": index.numpy().astype(np.int64),
                f"{prefix}.score": score.numpy().astype(np.float32),
                f"{prefix}.neuron": neuron.numpy().astype(np.int64),
                f"{prefix}.box": np.asarray(boxes, dtype=np.int64),
                f"{prefix}.patch": np.rint(patches * 255).astype(np.uint8),
                f"{prefix}.heatmap": heat.numpy().astype(np.float16),
            })
    return tensors


def _channels(module: nn.Module) -> int:
    """The channels of a convolution, the units of a linear layer."""
    if isinstance(module, nn.Conv2d):
        return module.out_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    raise TypeError(f"reference samples need a Conv2d or Linear layer, got {type(module).__name__}")


def expected_layout(model: nn.Sequential, k: int) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Every tensor name of a references file for ``model`` with its shape and numpy dtype."""
    layout: dict[str, tuple[tuple[int, ...], Any]] = {}
    for layer in REFERENCE_LAYERS:
        module = model.get_submodule(layer)
        channels = _channels(module)
        top, left, bottom, right = receptive_box(model, layer, 0)
        shapes = {"index": (channels, k), "score": (channels, k), "neuron": (channels, k), "box": (channels, k, 4),
                  "patch": (channels, k, bottom - top, right - left), "heatmap": (channels, k, IMAGE_PX, IMAGE_PX)}
        for kind in KINDS:
            layout.update({f"{layer}.{kind}.{field}": (shape, DTYPES[field]) for field, shape in shapes.items()})
    return layout


def load_references(name: str | None = None, store_dir: Path | None = None) -> dict[str, dict[str, References]]:
    """The verified reference samples of model ``name`` (``None``: the default): ``{layer: {kind: References}}``.

    Checks as :func:`model_store.load_model` does, before and after parsing: the manifest entry's
    ``references`` fields, the file's place in ``weights/``, its size and SHA-256, then every tensor's name,
    shape and dtype against the model's layers and ``references.k``.  Raises :class:`ModelStoreError`
    naming the file and the defect, also for a model without references.
    """
    store_dir = store_dir or store_dir_from_env()
    record = model_record(name, store_dir)
    meta = record.get("references")
    if meta is None:
        raise ModelStoreError(f"model {record['name']!r} has no reference samples in the store")
    path = weights_path(store_dir, meta["file"])
    try:
        arrays = safetensors.numpy.load(verified_bytes(path, meta))
    except (SafetensorError, ValueError) as error:
        raise ModelStoreError(f"{path}: not a valid safetensors file ({error})") from error
    layout = expected_layout(build(family_of(record), record["hidden"]), meta["k"])
    if set(arrays) != set(layout):
        raise ModelStoreError(f"{path}: tensors {sorted(set(arrays) ^ set(layout))} unexpected or missing")
    for key, (shape, dtype) in layout.items():
        if arrays[key].shape != shape or arrays[key].dtype != dtype:
            raise ModelStoreError(f"{path}: {key} is {arrays[key].dtype.name} {arrays[key].shape}, "
                                  f"expected {np.dtype(dtype).name} {shape}")
    return {layer: {kind: _references(arrays, f"{layer}.{kind}") for kind in KINDS} for layer in REFERENCE_LAYERS}


def _references(arrays: dict[str, np.ndarray], prefix: str) -> References:
    return References(index=arrays[f"{prefix}.index"], score=arrays[f"{prefix}.score"],
                      neuron=arrays[f"{prefix}.neuron"], box=arrays[f"{prefix}.box"],
                      patch=arrays[f"{prefix}.patch"].astype(np.float32) / 255.0,
                      heatmap=arrays[f"{prefix}.heatmap"].astype(np.float32))


def register_references(name: str, tensors: dict[str, np.ndarray], details: dict[str, Any],
                        store_dir: Path | None = None) -> dict[str, Any]:
    """Save ``tensors`` (:func:`compute_references`) as ``weights/<name>.references.safetensors`` and record
    its hash, size, ``k``, layers and ``details`` in model ``name``'s entry (``references``); return that object."""
    from .store import record_references  # the store writes the manifest

    return record_references(name, safetensors.numpy.save(tensors), {
        "layers": list(REFERENCE_LAYERS), "k": int(tensors[f"{REFERENCE_LAYERS[0]}.relevance.index"].shape[1]),
        "composite": COMPOSITE, "max_target": MAX_TARGET, "abs_norm": ABS_NORM, **details}, store_dir)
