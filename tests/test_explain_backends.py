"""Fast backend = reference backend (zennit / zennit-crp) for every rule, map and model.

Relative error of a map: max |fast − reference| / max |reference|, required
≤ 1e-5 for every map (a map that is zero in the reference must be zero).
The reference calls are batched here (one CRP call computes many maps) to
keep the test short; the benchmark calls it once per map.
"""

import numpy as np
import pytest
import torch

from model_store import load_model
from model_store.datasets import load_idx, mnist_dir_from_env
from model_store.strokes import load_golden_digits
from server.explain.engine import Engine, Request, Selection
from server.explain.fast import DTYPE, FastBackend, Start
from server.explain.reference import ReferenceBackend
from server.explain.rules import RULES, LayerRule, RuleInfo
from server.raster import rasterize

TOLERANCE = 1e-5
N_MNIST = 16
N_NEURONS = 8
MODELS = ("h16", "default")
# Drawings a visitor might make besides the golden digits: a bar, a dot, a scribble.
SKETCHES = [
    [[[0.5, 0.1], [0.52, 0.9]]],
    [[[0.4, 0.4]]],
    [[[0.1, 0.1], [0.9, 0.2], [0.2, 0.5], [0.8, 0.8], [0.3, 0.9]], [[0.6, 0.1], [0.6, 0.9]]],
]


def relative_errors(fast: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-map relative error over the last dimension; 0 where both maps are zero."""
    scale = reference.abs().amax(dim=-1)
    delta = (fast - reference).abs().amax(dim=-1)
    zero_map_error = torch.where(delta > 0, torch.inf, 0.0).to(delta)
    return torch.where(scale > 0, delta / scale.clamp(min=torch.finfo(delta.dtype).tiny), zero_map_error)


def digits(source: str) -> torch.Tensor:
    if source == "mnist":
        directory = mnist_dir_from_env()
        if directory is None:
            pytest.skip("MNIST_DIR is not set: the official test digits are not available")
        images = load_idx(directory, "test")[0][:N_MNIST]
    else:
        drawings = list(load_golden_digits().values()) + SKETCHES
        images = np.stack([rasterize(strokes) for strokes in drawings])
    return torch.from_numpy(images).reshape(len(images), 784).to(DTYPE)


@pytest.fixture(scope="module", params=MODELS)
def backends(request):
    model = load_model(request.param)
    return FastBackend(model), ReferenceBackend(model)


@pytest.mark.parametrize("source", ["mnist", "drawn"])
@pytest.mark.parametrize("rule", list(RULES))
def test_every_map_agrees(backends, rule, source):
    fast, reference = backends
    x = digits(source)
    batch, hidden = len(x), fast.w1.shape[0]
    forward = fast.forward(x)
    # Evenly spaced neurons plus the two most active ones.
    neurons = np.linspace(0, hidden - 1, min(N_NEURONS, hidden)).round().astype(int).tolist()
    neurons = sorted(set(neurons) | set(forward.a.sum(0).topk(2).indices.tolist()))
    assert len(neurons) >= N_NEURONS

    # Edges R(j→c) and all-maps: every class, every neuron, every image.
    per_class = x.repeat_interleave(10, dim=0)
    classes = list(range(10)) * batch
    reference_edges = reference.hidden_relevance(per_class, classes, rule).reshape(batch, 10, hidden)
    assert relative_errors(fast.edges(forward, rule).transpose(1, 2), reference_edges).max() <= TOLERANCE
    class_maps, hidden_maps = fast.all_maps(forward, rule)
    reference_lrp = reference.lrp_maps(per_class, classes, rule)
    assert relative_errors(class_maps.reshape(-1, 784), reference_lrp).max() <= TOLERANCE
    reference_hidden = reference.hidden_maps(x.repeat_interleave(hidden, dim=0), list(range(hidden)) * batch, rule)
    assert relative_errors(hidden_maps.reshape(-1, 784), reference_hidden).max() <= TOLERANCE

    # Selected maps, as Engine.explain computes them: CRP for the neurons × every class.
    pairs = [(j, c) for j in neurons for c in range(10)] * batch
    repeated = fast.forward(x.repeat_interleave(len(pairs) // batch, dim=0))
    _, crp = fast.relevance(repeated, rule, [Start("crp", c, j) for j, c in pairs])
    assert relative_errors(crp, reference.crp_maps(repeated.x, pairs, rule)).max() <= TOLERANCE
    alone = fast.forward(x.repeat_interleave(len(neurons), dim=0))
    _, maps = fast.relevance(alone, rule, [Start("hidden", 0, j) for j in neurons * batch])
    assert relative_errors(maps, reference.hidden_maps(alone.x, neurons * batch, rule)).max() <= TOLERANCE


@pytest.mark.parametrize("name", MODELS)
def test_engines_agree_on_a_mixed_batch(name):
    model = load_model(name)
    x = digits("drawn").float().reshape(-1, 28, 28).numpy()
    rules = list(RULES)
    requests = []
    for b, image in enumerate(x):
        selection = [Selection(), Selection(b % 10), Selection(b % 10, b % 16), Selection(None, (3 * b) % 16)][b % 4]
        requests.append(Request(image, selection, rule=rules[b % len(rules)]))
    fast_frames = Engine(model).explain(requests)
    reference_frames = Engine(model, backend="reference").explain(requests)
    for fast, reference in zip(fast_frames, reference_frames):
        assert (fast.prediction, fast.target, fast.mode) == (reference.prediction, reference.target, reference.mode)
        for field in ("heatmap", "edges", "hidden_relevance"):
            ours, theirs = torch.from_numpy(getattr(fast, field)), torch.from_numpy(getattr(reference, field))
            assert relative_errors(ours.reshape(1, -1), theirs.reshape(1, -1)).item() <= TOLERANCE, field
        for key, value in reference.conservation.items():
            assert fast.conservation[key] == pytest.approx(value, rel=TOLERANCE, abs=1e-9), key


def test_a_rule_with_a_constant_term_on_the_output_layer_agrees(monkeypatch):
    """ZBox on fc2 gives relevance to inactive neurons unless the ReLU's mask is applied: both backends apply it."""
    preset = RuleInfo("ZBox everywhere", "test preset", {"fc1": LayerRule("zbox", low=0.0, high=1.0),
                                                         "fc2": LayerRule("zbox", low=0.0, high=5.0)})
    monkeypatch.setitem(RULES, "zbox_everywhere", preset)
    model = load_model("h16")
    fast, reference = FastBackend(model), ReferenceBackend(model)
    x = digits("drawn")
    forward = fast.forward(x)
    assert (forward.z1 <= 0).any()
    batch = len(x)
    classes = list(range(10)) * batch
    expected = reference.hidden_relevance(x.repeat_interleave(10, dim=0), classes, "zbox_everywhere")
    edges = fast.edges(forward, "zbox_everywhere").transpose(1, 2).reshape(batch * 10, -1)
    assert relative_errors(edges, expected).max() <= TOLERANCE
    assert not edges.reshape(batch, 10, -1).transpose(1, 2)[forward.z1 <= 0].any()
