"""Captum methods through the engine: equal to captum's own output, and to closed forms."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, KernelShap, Lime, NoiseTunnel, Occlusion, Saliency

from model_store import load_model
from model_store.strokes import load_golden_digits
from server.explain import methods
from server.explain.engine import Engine, Request, Selection
from server.explain.rules import EPSILON
from server.raster import rasterize


@pytest.fixture(scope="module", params=["h16", "default"])
def model(request):
    return load_model(request.param)


@pytest.fixture(scope="module")
def images():
    golden = load_golden_digits()
    return np.stack([rasterize(golden[label]) for label in (2, 5, 9)])


def captum_directly(model: torch.nn.Module, method: str, image: np.ndarray, target: int) -> torch.Tensor:
    """The captum call for ``method``, written out from the documented settings."""
    x = torch.from_numpy(image).reshape(1, 1, 28, 28).requires_grad_(True)
    if method in methods.SAMPLING_METHODS:
        torch.manual_seed(methods.drawing_seed(x, method, target))
    if method == "saliency":
        return Saliency(model).attribute(x, target=target)
    if method == "gradient_x_input":
        return InputXGradient(model).attribute(x, target=target)
    if method == "integrated_gradients":
        return IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=50)
    if method == "smoothgrad":
        return NoiseTunnel(Saliency(model)).attribute(x, nt_type="smoothgrad", target=target, nt_samples=10,
                                                      stdevs=0.15)
    if method == "occlusion":
        return Occlusion(model).attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2), baselines=0.0,
                                          target=target, perturbations_per_eval=169)
    # Superpixels of 4×4 pixels numbered row-major, those with ink first; the blank ones share one
    # feature and get 0.
    blocks = torch.arange(28).div(4, rounding_mode="floor")
    grid = (blocks[:, None] * 7 + blocks[None, :])
    inked = sorted({int(block) for block in grid[torch.from_numpy(image) > 0]})
    numbering = {block: index for index, block in enumerate(inked)}
    mask = torch.tensor([[numbering.get(int(block), len(inked)) for block in row] for row in grid])
    explainer, samples = (Lime(model), 400) if method == "lime" else (KernelShap(model), 800)
    maps = explainer.attribute(x, baselines=0.0, target=target, feature_mask=mask.reshape(1, 1, 28, 28),
                               n_samples=samples, perturbations_per_eval=samples)
    return maps * (mask < len(inked))


@pytest.mark.parametrize("method", [name for name in methods.CAPTUM_METHODS if name not in methods.CONV_METHODS])
def test_engine_equals_captum(model, images, method):
    engine = Engine(model)
    requests = [Request(image, Selection(output=c)) for image, c in zip(images, (2, 3, 9))]
    requests = [Request(r.image, r.selection, method=method) for r in requests]
    frames = engine.explain(requests)
    expected = [captum_directly(model, method, r.image, r.selection.output) for r in requests]
    for frame, theirs in zip(frames, expected):
        assert frame.mode == "attribution" and frame.heatmap.dtype == np.float32
        theirs = theirs.detach().reshape(28, 28).numpy()
        assert np.abs(theirs).max() > 0
        assert np.allclose(frame.heatmap, theirs, rtol=1e-5, atol=1e-6 * np.abs(theirs).max())


def test_gradient_methods_match_the_closed_form(model, images):
    """∂y_c/∂x = W1ᵀ (1[z > 0] ⊙ W2[c]); Saliency is its magnitude, Gradient × Input its product with x."""
    engine = Engine(model)
    w1, b1, w2 = (t.detach().double().numpy() for t in (model.fc1.weight, model.fc1.bias, model.fc2.weight))
    for image in images:
        x = image.reshape(784).astype(np.float64)
        active = (w1 @ x + b1) > 0
        for c in (0, 6):
            gradient = w1.T @ (active * w2[c])
            saliency, product, epsilon = engine.explain([
                Request(image, Selection(output=c), method="saliency"),
                Request(image, Selection(output=c), method="gradient_x_input"),
                Request(image, Selection(output=c), method="lrp", rule="epsilon")])
            scale = np.abs(gradient).max()
            assert np.allclose(saliency.heatmap.ravel(), np.abs(gradient), atol=1e-5 * scale)
            assert np.allclose(product.heatmap.ravel(), x * gradient, atol=1e-5 * scale)
            # LRP-ε (started from the logit) is Gradient × Input on this network
            # as ε → 0: each active neuron's share is scaled by z_j / (z_j + ε),
            # so a barely active neuron (z_j ~ 1e-4) may move the map by ~ε / z_j.
            epsilon_share = EPSILON.epsilon / (w1 @ x + b1)[active].min()
            assert np.allclose(epsilon.heatmap, product.heatmap, atol=max(1e-5, 2 * epsilon_share) * scale)


def test_integrated_gradients_is_nearly_complete(model, images):
    """Σ IG ≈ logit(drawing) − logit(blank canvas), up to the 50-step quadrature (its error reached 2.3 % on
    one of the golden digits re-drawn for the cnn; 3 % still fails a map that is not IG's)."""
    engine = Engine(model)
    blank = engine.explain([Request(np.zeros((28, 28), dtype=np.float32), Selection())])[0].logits
    for image in images:
        frame = engine.explain([Request(image, Selection(), method="integrated_gradients")])[0]
        gap = frame.logits[frame.target] - blank[frame.target]
        assert frame.conservation["input_sum"] == pytest.approx(gap, rel=0.03, abs=0.05)


def test_superpixels_are_49_blocks_of_4x4():
    mask = methods.superpixels()
    assert mask.shape == (1, 1, 28, 28)
    assert torch.bincount(mask.ravel()).tolist() == [16] * 49
    assert mask[0, 0, :4, :4].unique().tolist() == [0] and mask[0, 0, 24:, 24:].unique().tolist() == [48]


def test_the_surrogate_fitting_library_loads_with_the_methods_not_in_the_first_comparison() -> None:
    # captum imports scikit-learn when LIME first fits (~1 s): that second belongs to server start.
    code = "import sys, server.explain.methods; print('sklearn.linear_model' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize("method", methods.SAMPLING_METHODS)
def test_sampling_methods_are_seeded_by_the_drawing(model, images, method):
    """The same drawing gives the same map bit for bit, alone or in any batch, whatever the global seed."""
    engine = Engine(model)
    requests = [Request(image, Selection(output=c), method=method) for image, c in zip(images, (2, 3, 9))]
    torch.manual_seed(1)
    batched = engine.explain(requests)
    torch.manual_seed(2)
    alone = [engine.explain([request])[0] for request in reversed(requests)][::-1]
    for one, other in zip(batched, alone):
        assert one.heatmap.tobytes() == other.heatmap.tobytes()
    assert batched[0].heatmap.tobytes() != batched[1].heatmap.tobytes()


@pytest.mark.parametrize("method", ["lime", "kernel_shap"])
def test_blank_superpixels_get_nothing(model, images, method):
    frame = Engine(model).explain([Request(images[0], Selection(), method=method)])[0]
    mask, count = methods.ink_superpixels(torch.from_numpy(images[0]).reshape(1, 1, 28, 28))
    assert 0 < count < 49
    blank = (mask == count).reshape(28, 28).numpy()
    assert not frame.heatmap[blank].any() and frame.heatmap[~blank].any()


def test_a_blank_canvas_gives_empty_surrogate_maps(model):
    blank = np.zeros((28, 28), dtype=np.float32)
    for frame in Engine(model).explain([Request(blank, Selection(), method=m) for m in ("lime", "kernel_shap")]):
        assert not frame.heatmap.any()


def superpixel_values(heatmap: torch.Tensor, mask: torch.Tensor, count: int) -> np.ndarray:
    """One value per ink superpixel (all its pixels carry the same one)."""
    flat, features = heatmap.reshape(-1), mask.reshape(-1)
    return np.array([float(flat[features == f][0]) for f in range(count)])


@pytest.mark.parametrize("method, explainer, samples", [
    ("lime", Lime, methods.LIME_SAMPLES), ("kernel_shap", KernelShap, methods.KERNEL_SHAP_SAMPLES)])
def test_two_seeds_agree(golden_digits, method, explainer, samples):
    """Median Pearson ≥ 0.9 between the superpixel attributions of two seeds, over the golden digits."""
    model = load_model("default")
    correlations = []
    for label, strokes in golden_digits.items():
        x = torch.from_numpy(rasterize(strokes)).reshape(1, 1, 28, 28)
        mask, count = methods.ink_superpixels(x)
        values = []
        for seed in (1, 2):
            with methods.seeded(seed):
                values.append(superpixel_values(methods.surrogate(explainer(model).attribute, x, label, samples),
                                                mask, count))
        correlations.append(np.corrcoef(*values)[0, 1])
    print(f"{method} at {samples} samples: Pearson between two seeds, median {np.median(correlations):.3f}, "
          f"min {np.min(correlations):.3f}")
    assert np.median(correlations) >= 0.9
