"""Attribution methods by name: LRP (this engine) and seven captum 0.9 methods.

Captum methods explain one output class (the selected one, else the
predicted one); they ignore a hidden-neuron selection.  Their settings suit a
28×28 digit on a black background:

- baselines are 0 (no ink), the MNIST background;
- LIME and KernelSHAP switch 4×4-pixel superpixels on and off, only those
  holding ink (a blank one equals the baseline: its attribution is exactly 0);
  a 2-pixel pen stroke spans one or two of them.  Their sample counts make two
  different seeds agree: median Pearson correlation of the superpixel
  attributions 0.98 (LIME, 400 samples) and 0.96 (KernelSHAP, 800) over 40
  official test digits, at a median 93 and 400 ms per map here;
- SmoothGrad, LIME and KernelSHAP are seeded from the drawing itself
  (:func:`drawing_seed`), so the same drawing always gives the same map;
- Occlusion slides a 4×4 black patch with stride 2 (13 × 13 positions).

Two *controls* (:mod:`server.explain.controls`, ``control=True``), the drawing
itself and its edges, know nothing of the model: they are offered in the
comparison so that a visitor sees the trust card fail them.

Each method declares its cost class, measured by ``python -m benchmarks.engine``
(median ms at B = 1, one thread, on the shared 2-core machine; see
``docs/benchmarks.md``): *per-frame* methods take at most
``PER_FRAME_BUDGET_MS`` and run on every pointer move, *on-pause* methods run
when the stroke ends.  Captum's own ``LRP`` is not offered: it fails on a model
containing ``nn.Flatten``, and the engine's LRP covers it.
"""

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import sklearn.linear_model  # noqa: F401 — see below
import torch
from captum.attr import (
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    LayerAttribution,
    LayerGradCam,
    LayerGradientXActivation,
    Lime,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from model_store.sizes import IMAGE_PX, IMAGE_SHAPE

from .controls import CONTROL_METHODS, control_maps

# LIME and KernelSHAP fit their surrogates with scikit-learn, which captum imports on first use: ~1 s
# here, paid by the first visitor to compare methods (a LIME map of 980 ms instead of 11).  Importing it
# above moves that second to server start.

Cost = Literal["per-frame", "on-pause"]

# A per-frame method must leave room for raster, forward pass and LRP in a
# frame budget of a few milliseconds per visitor.
PER_FRAME_BUDGET_MS = 2.0
SUPERPIXEL_PX = 4
LIME_SAMPLES = 400
KERNEL_SHAP_SAMPLES = 800
INTEGRATION_STEPS = 50
SMOOTHGRAD_SAMPLES = 10
# Smilkov et al. 2017, "SmoothGrad", §3: noise of 10–20 % of the input range works best.
SMOOTHGRAD_STDEV = 0.15
OCCLUSION_WINDOW = (1, 4, 4)
OCCLUSION_STRIDES = (1, 2, 2)


@dataclass(frozen=True)
class MethodInfo:
    """What the page shows of a method: label, cost class, one-paragraph description, whether
    its maps are signed (evidence for and against) or magnitudes only (``|∂y/∂x|``: sensitivity), and
    whether it is a control that knows nothing of the model (:mod:`server.explain.controls`)."""

    label: str
    cost: Cost
    description: str
    signed: bool = True
    control: bool = False


METHODS: dict[str, MethodInfo] = {
    "lrp": MethodInfo(
        "LRP / CRP (zennit)", "per-frame",
        "Layer-wise relevance propagation under the chosen rule, conditioned on the selected neurons "
        "(CRP); closed form, checked against zennit and zennit-crp."),
    "saliency": MethodInfo(
        "Saliency", "per-frame",
        "|∂ logit / ∂ pixel|: how sensitive the class score is to each pixel, regardless of ink.",
        signed=False),
    "gradient_x_input": MethodInfo(
        "Gradient × Input", "per-frame",
        "∂ logit / ∂ pixel × pixel; on this network the same map as LRP-ε."),
    "integrated_gradients": MethodInfo(
        "Integrated Gradients", "on-pause",
        f"Gradient × Input averaged along the path from a blank canvas to the drawing "
        f"({INTEGRATION_STEPS} steps); sums to logit(drawing) − logit(blank)."),
    "smoothgrad": MethodInfo(
        "SmoothGrad", "per-frame",
        f"Saliency averaged over {SMOOTHGRAD_SAMPLES} noisy copies of the drawing "
        f"(σ = {SMOOTHGRAD_STDEV}), which smooths the gradient's noise.", signed=False),
    "occlusion": MethodInfo(
        "Occlusion", "on-pause",
        "How much the class score drops when a 4×4 patch is blacked out, slid with stride 2."),
    "lime": MethodInfo(
        "LIME", "on-pause",
        f"A sparse linear surrogate fitted to the model on {LIME_SAMPLES} random subsets "
        f"of the {SUPERPIXEL_PX}×{SUPERPIXEL_PX}-pixel superpixels holding ink."),
    "kernel_shap": MethodInfo(
        "KernelSHAP", "on-pause",
        f"Shapley values of the {SUPERPIXEL_PX}×{SUPERPIXEL_PX}-pixel superpixels holding ink, "
        f"estimated from {KERNEL_SHAP_SAMPLES} coalitions."),
    "gradcam": MethodInfo(
        "Grad-CAM", "per-frame",
        "A conv layer's channels weighted by their gradient averaged over the positions, summed, kept where "
        "positive (ReLU) and scaled up to 28×28: where the layer sees the class, at the layer's coarse "
        "resolution (8×8 for conv2). Convolutional networks only."),
    "hirescam": MethodInfo(
        "HiResCAM", "per-frame",
        "Grad-CAM without the averaging: each position's activation times its own gradient, summed over the "
        "channels (Draelos & Carin 2020). Averaging lets a channel's gradient elsewhere light up positions "
        "that did not raise the class; HiResCAM shows only the positions that did. Convolutional networks only."),
    "ink": MethodInfo(
        "Control: the drawing itself", "per-frame",
        "Not an explanation: the ink itself as the map, the same for every model and class. A control: "
        "the trust card must fail it.", signed=False, control=True),
    "edges": MethodInfo(
        "Control: edges of the drawing", "per-frame",
        "Not an explanation: the outline of the strokes (Sobel edge detector), the same for every model and "
        "class, the control of Adebayo et al. 2018. The trust card must fail it.", signed=False, control=True),
}

# The methods that read a conv layer's feature maps (the selected conv layer, else the last one).
CONV_METHODS = ("gradcam", "hirescam")
LAST_CONV_LAYER = "conv2"
# Each conv layer's feature maps as Grad-CAM reads them: after its ReLU.
FEATURE_MAPS = {"conv1": "relu1", "conv2": "relu2"}


# The captum methods :func:`attribute` computes: all but the engine's own LRP and the controls.
CAPTUM_METHODS = tuple(name for name in METHODS if name != "lrp" and not METHODS[name].control)


def superpixels(size: int = IMAGE_PX, block: int = SUPERPIXEL_PX) -> torch.Tensor:
    """``(1, 1, size, size)`` int64 feature mask: ``block × block`` squares numbered row-major."""
    index = torch.arange(size) // block
    per_row = (size + block - 1) // block
    return (index[:, None] * per_row + index[None, :]).reshape(1, 1, size, size)


# captum samples with torch's global generator, which every thread of a process shares: a seeded
# method holds this lock from seeding to its last draw, or another thread's draws would interleave.
_GLOBAL_GENERATOR = threading.Lock()
SAMPLING_METHODS = ("smoothgrad", "lime", "kernel_shap")


def drawing_seed(image: torch.Tensor, method: str, target: int) -> int:
    """A 63-bit seed from the image's float32 bytes, the method and the class: the same drawing,
    method and class always sample the same, on any replica and in any order of visitors."""
    digest = hashlib.blake2b(image.detach().float().numpy().tobytes(), digest_size=8,
                             person=f"{method}:{target}".encode()[:16])
    return int.from_bytes(digest.digest(), "little") >> 1


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generator seeded to ``seed``, restoring its state afterwards."""
    with _GLOBAL_GENERATOR, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def ink_superpixels(image: torch.Tensor, block: int = SUPERPIXEL_PX) -> tuple[torch.Tensor, int]:
    """The feature mask ``(1, 1, 28, 28)`` and the number ``n`` of superpixels holding ink.

    Superpixels with ink are numbered ``0…n−1``, all blank ones share number
    ``n``.  A blank superpixel is 0 already, the baseline: switching it off
    changes no input, so its true attribution is exactly 0.  One shared feature
    for all of them keeps the surrogates from spending samples (and noise) on
    them; :func:`surrogate` sets their attribution to 0.
    """
    mask = superpixels(image.shape[-1], block)
    inked = torch.zeros(int(mask.max()) + 1, dtype=torch.bool)
    inked[mask.ravel()[image.detach().reshape(-1) > 0]] = True
    count = int(inked.sum())
    numbering = torch.full(inked.shape, count, dtype=torch.long)
    numbering[inked] = torch.arange(count)
    return numbering[mask], count


def surrogate(explainer: Callable[..., torch.Tensor], image: torch.Tensor, target: int,
               samples: int) -> torch.Tensor:
    """LIME or KernelSHAP of one ``(1, 1, 28, 28)`` image on its ink superpixels, from ``samples``
    perturbations; blank ones get 0."""
    mask, count = ink_superpixels(image)
    if count == 0:
        return torch.zeros_like(image)
    maps = explainer(image, baselines=0.0, target=target, feature_mask=mask, n_samples=samples,
                     perturbations_per_eval=samples)
    return maps * (mask < count)


def attribute(model: nn.Module, method: str, images: torch.Tensor, targets: list[int],
              layer: str | None = None) -> torch.Tensor:
    """Captum's attribution of ``targets`` for a batch of images, or a control's map (model and targets unused).

    Parameters
    ----------
    model:
        The network; captum runs it unmodified (no hooks are left behind).
    method:
        One of :data:`CAPTUM_METHODS` or :data:`~server.explain.controls.CONTROL_METHODS`.
    images:
        ``(B, 1, 28, 28)`` float32 in [0, 1].
    targets:
        ``B`` output classes.
    layer:
        The conv layer of :data:`CONV_METHODS` (default :data:`LAST_CONV_LAYER`); ignored by the others.

    Returns
    -------
    torch.Tensor
        ``(B, 28, 28)`` float32 attribution; positive supports the target.
        SmoothGrad, LIME and KernelSHAP sample one image at a time, seeded by
        :func:`drawing_seed`: the same image and class give the same map bit
        for bit, whatever else is in the batch.
    """
    if method in CONTROL_METHODS:
        return control_maps(method, images)
    target = torch.as_tensor(targets)
    # Gradient methods want an input that requires grad; captum would set it (with a warning) itself.
    images = images.detach().requires_grad_(True)
    maps: torch.Tensor  # captum ships no type information
    if method == "saliency":
        maps = Saliency(model).attribute(images, target=target)
    elif method == "gradient_x_input":
        maps = InputXGradient(model).attribute(images, target=target)
    elif method == "integrated_gradients":
        maps = IntegratedGradients(model).attribute(images, baselines=0.0, target=target,
                                                    n_steps=INTEGRATION_STEPS)
    elif method in SAMPLING_METHODS:
        maps = torch.cat([_sample(model, method, images[b:b + 1], int(target[b])) for b in range(len(images))])
    elif method in CONV_METHODS:
        maps = class_activation_map(model, method, images, target, layer or LAST_CONV_LAYER)
    elif method == "occlusion":
        maps = Occlusion(model).attribute(images, sliding_window_shapes=OCCLUSION_WINDOW,
                                          strides=OCCLUSION_STRIDES, baselines=0.0, target=target,
                                          perturbations_per_eval=13 * 13)
    else:
        raise ValueError(f"unknown captum method {method!r}; expected one of {', '.join(CAPTUM_METHODS)}")
    return maps.detach().reshape(len(images), *IMAGE_SHAPE)


def class_activation_map(model: nn.Module, method: str, images: torch.Tensor, target: torch.Tensor,
                         layer: str) -> torch.Tensor:
    """Grad-CAM (captum's ``LayerGradCam``, ReLU) or HiResCAM of conv layer ``layer``'s feature maps (after
    its ReLU), upsampled to 28×28.

    HiResCAM is ``Σ_k A_k ⊙ ∂y/∂A_k`` (captum's ``LayerGradientXActivation`` summed over channels), kept
    where positive as Grad-CAM is; both are scaled up bilinearly from the layer's own resolution.
    """
    conv = model.get_submodule(FEATURE_MAPS[layer])
    if method == "gradcam":
        cam = LayerGradCam(model, conv).attribute(images, target=target, relu_attributions=True)
    else:
        cam = LayerGradientXActivation(model, conv).attribute(images, target=target).sum(dim=1, keepdim=True)
        cam = cam.clamp(min=0)
    upsampled: torch.Tensor = LayerAttribution.interpolate(cam, IMAGE_SHAPE, interpolate_mode="bilinear")
    return upsampled


def _sample(model: nn.Module, method: str, image: torch.Tensor, target: int) -> torch.Tensor:
    """A sampling method's map of one image, seeded from the image itself (:func:`drawing_seed`)."""
    with seeded(drawing_seed(image, method, target)):
        if method == "smoothgrad":
            smoothed: torch.Tensor = NoiseTunnel(Saliency(model)).attribute(  # captum ships no type information
                image, nt_type="smoothgrad", target=target, nt_samples=SMOOTHGRAD_SAMPLES, stdevs=SMOOTHGRAD_STDEV)
            return smoothed
        # One surrogate per image: captum fits them one by one anyway, with a warning for batches.
        if method == "lime":
            return surrogate(Lime(model).attribute, image, target, LIME_SAMPLES)
        return surrogate(KernelShap(model).attribute, image, target, KERNEL_SHAP_SAMPLES)
