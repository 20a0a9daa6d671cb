"""Every claim the trust card makes about conservation, computed from the frame's own figures, on 200 digits.

The page's words (``static/trust.js``: ``relevanceFlow``, ``conservationWords``) run in a real browser on
frames the engine computed; each claim is then recomputed here from the model's weights and the frame:

- the output neuron's bias holds ``logit − hidden_sum`` (every preset has ε on ``fc2``);
- the pixels hold ``input_sum``; the hidden neurons' biases took ``hidden_sum − input_sum`` (more or less
  than reached the hidden layer, as the sign says), which equals each neuron's bias share under its rule;
  ZBox passes it on whole;
- the rule changes only the last step: hidden relevances and edges are the same under every preset.

Fails before issue 25: the card said "The rule created 3.83" under ε, where negative biases gave the pixels
more than reached the hidden layer, and α2β1 "creates relevance" although its map summed to less on about
half of the digits.
"""

from typing import Any

import numpy as np
import pytest
from test_page import Visit, browser, server, visit  # noqa: F401

from model_store import load_model
from model_store.datasets import load_embedded, load_idx, mnist_dir_from_env, split_embedded
from server.explain.engine import Engine, FrameData, Request, Selection
from server.explain.rules import RULES, STABILIZER

pytestmark = pytest.mark.browser
DIGITS = 200


def digits() -> np.ndarray:
    directory = mnist_dir_from_env()
    if directory is not None:
        return load_idx(directory, "test")[0][:DIGITS]
    _, (held_out, _) = split_embedded(*load_embedded())
    return held_out[:DIGITS]


def bias_share(model: Any, image: np.ndarray, rule: str) -> np.ndarray:
    """``(H,)`` the fraction of each hidden neuron's relevance its bias keeps under ``rule`` on ``fc1``.

    With numerators ``x_i w'_ji`` and denominator ``Σ_i x_i w'_ji + b'_j`` the pixels get
    ``1 − b'_j / denominator`` of ``R_j`` (Montavon et al. 2019); α2β1 has one such share per sign.
    """
    w = model.fc1.weight.detach().double().numpy()
    b = model.fc1.bias.detach().double().numpy()
    x = image.reshape(-1).astype(np.float64)
    layer = RULES[rule].layers["fc1"]

    def share(weights: np.ndarray, bias: np.ndarray, epsilon: float) -> np.ndarray:
        z = weights @ x + bias
        return bias / np.where(z >= 0, z + epsilon, z - epsilon)

    positive, negative = np.maximum(w, 0), np.minimum(w, 0)
    if layer.kind == "epsilon":
        return share(w, b, layer.epsilon)
    if layer.kind == "zplus":
        return share(positive, np.maximum(b, 0), STABILIZER)
    if layer.kind == "gamma":
        return share(w + layer.gamma * positive, b + layer.gamma * np.maximum(b, 0), STABILIZER)
    if layer.kind == "alpha_beta":
        return (layer.alpha * share(positive, np.maximum(b, 0), STABILIZER)
                - layer.beta * share(negative, np.minimum(b, 0), STABILIZER))
    return np.zeros(len(b))  # ZBox: no bias in its denominator


def wire(frame: FrameData, hidden: int | None) -> dict[str, Any]:
    """The frame fields the card reads, as docs/protocol.md sends them."""
    return {"mode": frame.mode, "target": frame.target, "hidden": hidden, "versus": frame.versus,
            "logits": frame.logits.tolist(), "conservation": frame.conservation}


def test_every_conservation_claim_holds(visit: Visit) -> None:
    model = load_model(None)
    engine = Engine(model)
    b2 = model.fc2.bias.detach().double().numpy()
    images = digits()
    cases, claims = [], []
    for index, image in enumerate(images):
        lrp_edges = None
        for rule in RULES:
            lrp = engine.explain([Request(image, Selection(), rule=rule)])[0]
            c = lrp.target
            if lrp_edges is None:
                lrp_edges = lrp.edges
            # The rule changes only the pixel map: the hidden relevances and edges are ε on fc2 for every preset.
            np.testing.assert_allclose(lrp.edges, lrp_edges, rtol=0, atol=1e-5)
            j = int(np.argmax(np.abs(lrp.hidden_relevance)))
            rival = int(np.argsort(-lrp.logits)[1])
            crp = engine.explain([Request(image, Selection(c, j), rule=rule)])[0]
            contrast = engine.explain([Request(image, Selection(c, versus=rival), rule=rule)])[0]
            shares = bias_share(model, image, rule)
            for frame, hidden, output_bias, relevance in (
                    (lrp, None, b2[c], lrp.edges[:, c].astype(np.float64)),
                    (crp, j, None, np.eye(len(shares))[j] * float(crp.edges[j, c])),
                    (contrast, None, b2[c] - b2[rival], (contrast.edges[:, c] - contrast.edges[:, rival]).astype(np.float64))):
                cases.append({"frame": wire(frame, hidden), "rule": rule})
                claims.append((index, rule, frame, output_bias, float(relevance @ shares)))
    answers = visit.page.evaluate(
        "async (cases) => { const t = await import('/static/trust.js');"
        " return cases.map(({ frame, rule }) => ({ flow: t.relevanceFlow(frame),"
        " words: t.conservationWords(frame, rule).join(' '), whole: t.WHOLE })); }", cases)
    assert len(answers) == len(claims) == DIGITS * len(RULES) * 3
    for answer, (index, rule, frame, output_bias, biases_took) in zip(answers, claims):
        flow, words, where = answer["flow"], answer["words"], f"digit {index}, {rule}, {frame.mode}"
        figures = frame.conservation
        scale = max(abs(figures["logit"]), abs(figures["hidden_sum"]), 1.0)
        assert flow["logit"] == pytest.approx(figures["logit"]) and flow["input"] == pytest.approx(figures["input_sum"])
        if output_bias is not None:
            assert flow["outputBias"] == pytest.approx(output_bias, abs=1e-4 * scale), where
            assert "holds the rest" in words or "hold the rest" in words, where
        assert flow["hiddenBiases"] == pytest.approx(biases_took, abs=2e-4 * scale), where
        assert "created" not in words and "creates" not in words, where
        whole = abs(flow["hiddenBiases"]) <= answer["whole"] * max(abs(flow["hidden"]), 1e-9)
        if rule == "zbox":
            assert whole and "ZBox passes it on whole" in words, where
        elif not whole:
            said = ("bias took" in words or "biases took" in words) if flow["hiddenBiases"] > 0 \
                else "gave the pixels that much" in words
            assert said, (where, words)
        if frame.mode != "hidden":
            assert ("rule changes only this last step" in words) == (frame.mode in ("lrp", "crp", "contrast")), where
