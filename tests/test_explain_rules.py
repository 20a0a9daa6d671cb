"""Sign-faithful rule presets: the sign of every hidden → output message, silent neurons, no blow-up.

Every preset puts ε on ``fc2`` (``server/explain/rules.py``), so ``R(j→c)``
has the sign of neuron j's real push ``a_j · w2[c, j]`` for every class, and
a silent neuron's map alone is the ε decomposition of its pre-activation.
"""

import numpy as np
import pytest
import torch

from model_store import load_model
from model_store.datasets import load_idx, mnist_dir_from_env
from server.explain.engine import Engine, Request, Selection
from server.explain.fast import DTYPE, FastBackend, unit_maps
from server.explain.rules import EPSILON, RULES, SILENT_NEURON_RULE

MODELS = ("h16", "default")
# |a_j · w2[c, j]| below this has no sign worth testing.
PUSH_FLOOR = 1e-6
BLOW_UP = 10.0


def official(count: int | None) -> torch.Tensor:
    directory = mnist_dir_from_env()
    if directory is None:
        pytest.skip("MNIST_DIR is not set: the official test digits are not available")
    images = load_idx(directory, "test")[0]
    return torch.from_numpy(images[:count]).reshape(-1, 784).to(DTYPE)


@pytest.fixture(scope="module", params=MODELS)
def backend(request) -> FastBackend:
    return FastBackend(load_model(request.param))


def test_every_preset_puts_epsilon_on_the_output_layer():
    assert all(info.layers["fc2"] == EPSILON for info in RULES.values())
    assert SILENT_NEURON_RULE == EPSILON


@pytest.mark.parametrize("rule", list(RULES))
def test_edges_carry_the_sign_of_the_push(backend, rule):
    forward = backend.forward(official(200))
    push = forward.a[:, :, None] * backend.w2.T[None]  # (B, H, 10): a_j · w2[c, j]
    edges = backend.edges(forward, rule)
    clear = push.abs() > PUSH_FLOOR
    assert clear.sum() > 1000
    assert torch.equal(torch.sign(edges[clear]), torch.sign(push[clear]))


@pytest.mark.parametrize("rule", list(RULES))
def test_a_silent_neuron_alone_is_the_epsilon_decomposition_of_its_pre_activation(backend, rule):
    forward = backend.forward(official(20))
    rows, neurons = torch.nonzero(forward.z1 <= 0, as_tuple=True)
    assert len(rows) > 0
    _, maps = backend.all_maps(forward, rule)
    z = forward.z1[rows, neurons]
    expected = forward.x[rows] * backend.w1[neurons] * (z / (z - EPSILON.epsilon))[:, None]
    assert torch.allclose(maps[rows, neurons].double(), expected, rtol=1e-5, atol=1e-7)


def test_the_frame_says_when_a_neuron_is_silent():
    model = load_model("h16")
    engine = Engine(model)
    image = official(1).reshape(28, 28).float().numpy()
    z1 = FastBackend(model).forward(torch.from_numpy(image).reshape(1, 784).to(DTYPE)).z1[0]
    silent, active = int(torch.argmin(z1)), int(torch.argmax(z1))
    frames = engine.explain([Request(image, Selection(hidden=j), rule="zplus") for j in (silent, active)]
                            + [Request(image, Selection(output=3, hidden=active), rule="zplus")])
    assert [frame.neuron_silent for frame in frames] == [True, False, None]
    # Positive pixels push the silent neuron toward firing: the ink on its positive weights.
    x, w = image.ravel(), model.fc1.weight[silent].detach().numpy()
    assert np.array_equal(np.sign(frames[0].heatmap.ravel()), np.sign(x * w).astype(np.float32))


def largest_ratio(backend: FastBackend, x: torch.Tensor, rule: str) -> float:
    """max over every map (10 class maps, H × 10 CRP maps, H neuron maps) of max|R| / max(|logit|, 1)."""
    forward = backend.forward(x)
    classes, hidden = backend.all_maps(forward, rule)
    # A CRP map is R(j→c) times row j of fc1's share matrix: its largest value is max_c |R(j→c)| times
    # the largest share of the row, the unit map of neuron j started from 1 (active neurons only get any).
    shares = unit_maps(backend.forms[rule][0], forward.x, (forward.z1 > 0).to(DTYPE)).abs().amax(dim=2)
    crp = (backend.edges(forward, rule).abs().amax(dim=2) * shares).amax(dim=1)
    largest = torch.stack([classes.abs().amax(dim=(1, 2)), crp, hidden.abs().amax(dim=(1, 2)).to(DTYPE)], 1)
    return float((largest.amax(dim=1) / forward.logits.abs().amax(dim=1).clamp(min=1.0)).max())


@pytest.mark.parametrize("rule", list(RULES))
def test_no_map_blows_up_on_200_digits(backend, rule):
    assert largest_ratio(backend, official(200), rule) <= BLOW_UP


@pytest.mark.slow
@pytest.mark.timeout(3600)  # ~1 min per rule for default on an idle core; far more on a loaded machine
@pytest.mark.parametrize("rule", list(RULES))
def test_no_map_blows_up_on_the_whole_test_set(backend, rule):
    x = official(None)
    ratios = [largest_ratio(backend, x[start:start + 500], rule) for start in range(0, len(x), 500)]
    print(f"{rule}: largest max|R| / max(|logit|, 1) over {len(x)} digits: {max(ratios):.3f}")
    assert max(ratios) <= BLOW_UP
