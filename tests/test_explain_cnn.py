"""The cnn family: the closed form equals zennit's own composites and zennit-crp, for every preset, class and
channel, on official test digits and on drawings; Grad-CAM and HiResCAM equal captum; the engine's cnn
frames (channels, feeds, conservation) follow from those numbers.

Relative error of a map: max |fast − reference| / max |reference| ≤ 1e-5 (as for the MLP,
tests/test_explain_backends.py).
"""

import copy

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam, LayerGradientXActivation
from test_explain_backends import TOLERANCE, digits, relative_errors

from model_store import load_model
from server.explain.cnn import CNN_RULES, CONV_SHAPES, ConvBackend
from server.explain.cnn_reference import COMPOSITES, ConvReferenceBackend
from server.explain.engine import Engine, Request, Selection
from server.explain.family import FAMILIES, family_of
from server.explain.modes import Start

N_DIGITS = 6


@pytest.fixture(scope="module")
def cnn() -> torch.nn.Module:
    return load_model("cnn")


@pytest.fixture(scope="module")
def backends(cnn: torch.nn.Module) -> tuple[ConvBackend, ConvReferenceBackend]:
    return ConvBackend(cnn), ConvReferenceBackend(cnn)


def test_presets_are_zennits_named_composites() -> None:
    assert list(CNN_RULES) == list(COMPOSITES) == ["epsilon_gamma_box", "epsilon_plus_flat",
                                                  "epsilon_alpha2_beta1_flat", "epsilon_plus"]
    assert FAMILIES["cnn"].default_rule in CNN_RULES


def test_the_store_cnn_is_a_cnn(cnn: torch.nn.Module) -> None:
    assert family_of(cnn).name == "cnn" and family_of(load_model("default")).name == "mlp"


def test_forward_equals_the_model(backends, cnn) -> None:
    fast, _ = backends
    x = digits("drawn")
    with torch.no_grad():
        expected = copy.deepcopy(cnn).double()(x.reshape(-1, 1, 28, 28))  # the fixture stays float32
    # The convolutions run in float32 (server/explain/cnn.py): equal to float32 rounding.
    assert torch.allclose(fast.forward(x).logits, expected, rtol=1e-5, atol=1e-5)


def each_with(x: torch.Tensor, times: int) -> torch.Tensor:
    return x.repeat_interleave(times, dim=0)


@pytest.mark.parametrize("source", ["mnist", "drawn"])
@pytest.mark.parametrize("rule", list(CNN_RULES))
def test_every_class_and_channel_map_equals_zennit_crp(backends, source: str, rule: str) -> None:
    """Every class's LRP map, and every channel of conv1 and conv2 towards each digit's predicted class.

    The reference computes each kind of map for all digits in one CondAttribution call (batched conditions).
    """
    fast, reference = backends
    x = digits(source)[:N_DIGITS]
    forward = fast.forward(x)
    predicted = forward.logits.argmax(dim=1).tolist()
    many = fast.forward(each_with(x, 10))
    ours = fast.relevance(many, rule, [Start("lrp", c) for _ in x for c in range(10)])[1]
    theirs = reference.maps(each_with(x, 10), [{"y": [c]} for _ in x for c in range(10)], rule)
    assert relative_errors(ours, theirs).max() <= TOLERANCE
    for layer, (channels, _, _) in CONV_SHAPES.items():
        many = fast.forward(each_with(x, channels))
        ours = fast.relevance(many, rule, [Start("crp", c, k, None, layer) for c in predicted for k in range(channels)])[1]
        theirs = reference.maps(each_with(x, channels),
                                [{layer: [k], "y": [c]} for c in predicted for k in range(channels)], rule)
        assert relative_errors(ours, theirs).max() <= TOLERANCE, layer


@pytest.mark.parametrize("rule", list(CNN_RULES))
def test_units_contrast_edges_channels_and_feeds_equal_zennit_crp(backends, rule: str) -> None:
    fast, reference = backends
    x = digits("mnist")[:2]
    forward = fast.forward(x)
    predicted = forward.logits.argmax(dim=1).tolist()
    rival = [(c + 1) % 10 for c in predicted]
    for starts in ([Start("crp", c, j) for c, j in zip(predicted, range(len(x)))],
                   [Start("hidden", c, j) for c, j in zip(predicted, range(len(x)))],
                   [Start("contrast", c, None, v) for c, v in zip(predicted, rival)],
                   [Start("contrast", c, 3, v) for c, v in zip(predicted, rival)]):
        ours, theirs = fast.relevance(forward, rule, starts), reference.relevance(forward, rule, starts)
        assert relative_errors(ours[1], theirs[1]).max() <= TOLERANCE, starts[0]
        assert relative_errors(ours[0].transpose(1, 2), theirs[0].transpose(1, 2)).max() <= TOLERANCE
    ours, theirs = fast.channels(forward, rule, predicted), reference.channels(forward, rule, predicted)
    for layer in CONV_SHAPES:
        assert relative_errors(ours[layer], theirs[layer]).max() <= TOLERANCE, layer
    through = [("conv2", k) for k in range(len(x))]
    ours = fast.channels(forward, rule, predicted, through)["conv1"]
    theirs = reference.channels(forward, rule, predicted, through)["conv1"]
    assert relative_errors(ours, theirs).max() <= TOLERANCE


@pytest.mark.parametrize("rule", list(CNN_RULES))
def test_one_drawing_alone_equals_zennit_crp(backends, rule: str) -> None:
    """Batch 1 runs torch's native convolution kernels (server/explain/cnn.py, SMALL_BATCH), larger batches
    oneDNN's: both equal zennit-crp, for the class's map and a channel of each conv layer."""
    fast, reference = backends
    x = digits("mnist")[:1]
    forward = fast.forward(x)
    c = int(forward.logits.argmax())
    for start, condition in ((Start("lrp", c), {"y": [c]}), (Start("crp", c, 3, None, "conv1"), {"conv1": [3], "y": [c]}),
                             (Start("crp", c, 7, None, "conv2"), {"conv2": [7], "y": [c]})):
        ours = fast.relevance(forward, rule, [start])[1]
        assert relative_errors(ours, reference.maps(x, [condition], rule)).max() <= TOLERANCE, start


def test_a_channel_map_is_the_class_map_restricted_to_it(backends) -> None:
    """Conditioning is linear: the maps of all channels of a layer sum to the class's map (CRP's completeness)."""
    fast, _ = backends
    x = digits("mnist")[:2]
    forward = fast.forward(x)
    for layer, (channels, _, _) in CONV_SHAPES.items():
        total = sum(fast.relevance(forward, "epsilon_plus_flat", [Start("crp", 3, k, None, layer)] * 2)[1]
                    for k in range(channels))
        whole = fast.relevance(forward, "epsilon_plus_flat", [Start("lrp", 3)] * 2)[1]
        assert torch.allclose(total, whole, atol=TOLERANCE * float(whole.abs().max()))


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
def test_class_activation_maps_equal_captum(cnn, method: str) -> None:
    engine = Engine(cnn)
    images = digits("mnist")[:3].float().reshape(-1, 28, 28).numpy()
    for layer in CONV_SHAPES:
        frames = engine.explain([Request(image, Selection(output=5, hidden=0, layer=layer), method=method,
                                         rule="epsilon_plus")
                                 for image in images])
        x = torch.from_numpy(images).reshape(-1, 1, 28, 28).requires_grad_(True)
        module = cnn.get_submodule(layer.replace("conv", "relu"))
        if method == "gradcam":
            cam = LayerGradCam(cnn, module).attribute(x, target=5, relu_attributions=True)
        else:
            cam = LayerGradientXActivation(cnn, module).attribute(x, target=5).sum(1, keepdim=True).clamp(min=0)
        expected = LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear").detach()
        for frame, theirs in zip(frames, expected):
            assert frame.mode == "attribution" and float(theirs.abs().max()) > 0
            assert np.allclose(frame.heatmap, theirs.reshape(28, 28).numpy(), atol=1e-6), layer


def test_engine_frames_of_a_cnn(cnn) -> None:
    engine = Engine(cnn)
    image = digits("mnist")[0].float().reshape(28, 28).numpy()
    lrp, channel, unit = engine.explain([Request(image, Selection(), rule="epsilon_plus"),
                                         Request(image, Selection(hidden=4, layer="conv2"), rule="epsilon_plus"),
                                         Request(image, Selection(output=2, hidden=7), rule="epsilon_plus")])
    assert lrp.mode == "lrp" and channel.mode == "crp" and unit.mode == "crp"
    assert lrp.channels is not None and lrp.feeds is None
    assert {name: data.activations.shape for name, data in lrp.channels.items()} == \
        {name: shape for name, shape in CONV_SHAPES.items()}
    # A channel's CRP map sums to the relevance its channel carries for the class (conservation).
    relevance = lrp.channels["conv2"].relevance[4]
    assert channel.conservation["hidden_sum"] == pytest.approx(float(relevance), rel=1e-5)
    assert channel.feeds is not None and channel.feeds[0] == "conv1"
    assert channel.feeds[1].shape == (CONV_SHAPES["conv1"][0],) and np.abs(channel.feeds[1]).max() > 0
    assert channel.class_max_abs == pytest.approx(float(np.abs(lrp.heatmap).max()), rel=1e-5)


@pytest.mark.parametrize("selection, method, rule, message", [
    (Selection(hidden=8, layer="conv1"), "lrp", "epsilon_plus", "hidden neuron must be an integer in 0..7"),
    (Selection(hidden=0, layer="conv3"), "lrp", "epsilon_plus", "unknown layer 'conv3'"),
    (Selection(output=1, versus=2, hidden=0, layer="conv2"), "lrp", "epsilon_plus", "not a channel"),
    (Selection(), "lrp", "gamma", "unknown rule 'gamma' for a cnn"),
])
def test_bad_cnn_requests_are_refused(cnn, selection, method, rule, message) -> None:
    image = digits("drawn")[0].float().reshape(28, 28).numpy()
    with pytest.raises(ValueError, match=message):
        Engine(cnn).explain([Request(image, selection, method=method, rule=rule)])


def test_conv_methods_are_never_offered_to_an_mlp() -> None:
    engine = Engine(load_model("default"))
    image = digits("drawn")[0].float().reshape(28, 28).numpy()
    assert "gradcam" not in FAMILIES["mlp"].methods and "gradcam" in FAMILIES["cnn"].methods
    with pytest.raises(ValueError, match="unknown method 'gradcam' for a mlp"):
        engine.explain([Request(image, Selection(), method="gradcam")])
