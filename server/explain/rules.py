"""LRP rule presets: which rule each layer (``fc1``, ``fc2``) uses, by name.

A preset is data: the reference backend turns it into a zennit
``NameMapComposite`` (:func:`server.explain.reference.composite`), the fast
backend into closed-form share matrices (:func:`server.explain.fast.closed_form`).
Every preset names the rule of every Linear layer explicitly; zennit's
built-in composites do not fit this network (``EpsilonGammaBox`` maps ZBox to
convolutions only, ``EpsilonPlusFlat`` gives a uniform map on a Linear-only
model).

The rules, for a Linear layer ``z_k = Σ_i w_ki x_i + b_k`` with inputs
``x ≥ 0`` (pixels in [0, 1], ReLU outputs) and upper relevance ``R_k``
(``w⁺ = max(w, 0)``, ``w⁻ = min(w, 0)``; Montavon et al. 2019, "Layer-wise
relevance propagation: an overview"):

- ε:    ``R_i = x_i Σ_k w_ki R_k / (z_k ± ε)``
- z⁺:   ``R_i = x_i Σ_k w⁺_ki R_k / (Σ_i' w⁺_ki' x_i' + b⁺_k)``
- αβ:   ``R_i = x_i Σ_k (α w⁺_ki / (z⁺_k + b⁺_k) − β w⁻_ki / (z⁻_k + b⁻_k)) R_k``
- γ:    ε with ``w + γ w⁺`` and ``b + γ b⁺``, stabiliser 1e-6
- ZBox: ``R_i = Σ_k (x_i w_ki − l_i w⁺_ki − h_i w⁻_ki) R_k / (z_k − Σ_i' (l_i' w⁺_ki' + h_i' w⁻_ki'))``

as zennit 0.4.6 implements them (``zennit.rules``; the bias terms cancel in
the ZBox denominator).  All denominators are stabilised as in
``zennit.core.stabilize``: ``z + ε·(sign z + [z = 0])``.
"""

from dataclasses import dataclass, field
from typing import Literal

RuleKind = Literal["epsilon", "zplus", "alpha_beta", "gamma", "zbox"]

# zennit.core.stabilize's default, used by every rule but ε as its stabiliser.
STABILIZER = 1e-6


@dataclass(frozen=True)
class LayerRule:
    """One LRP rule with its parameters, as zennit 0.4.6 defines it.

    ``epsilon`` is ε for the ε rule and the denominator stabiliser for the
    others; ``alpha``, ``beta`` apply to ``alpha_beta``, ``gamma`` to
    ``gamma``, ``low``, ``high`` (the input box) to ``zbox``.
    """

    kind: RuleKind
    epsilon: float = STABILIZER
    alpha: float = 2.0
    beta: float = 1.0
    gamma: float = 0.25
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class RuleInfo:
    """A rule preset: page label and description, and the rule of each layer."""

    label: str
    description: str
    layers: dict[str, LayerRule] = field(default_factory=dict)


EPSILON = LayerRule("epsilon", epsilon=1e-6)

RULES: dict[str, RuleInfo] = {
    "epsilon": RuleInfo(
        label="ε (= Gradient × Input)",
        description=(
            "LRP-ε with ε = 1e-6 on both layers. On this ReLU network, with relevance started "
            "from the logit, it equals Gradient × Input: each pixel's share is its value times "
            "how much the logit would change with it. Biases keep part of the logit, so the map "
            "sums to less than the logit."
        ),
        layers={"fc1": EPSILON, "fc2": EPSILON},
    ),
    "zplus": RuleInfo(
        label="z⁺",
        description=(
            "LRP-z⁺ on both layers: relevance flows only along positive contributions "
            "(positive weight × active input), so the map shows ink that speaks for the class. "
            "Nothing is negative except where the start logit itself is negative."
        ),
        layers={"fc1": LayerRule("zplus"), "fc2": LayerRule("zplus")},
    ),
    "alpha2beta1": RuleInfo(
        label="α2β1",
        description=(
            "LRP-αβ with α = 2, β = 1 on both layers: positive contributions count twice, "
            "negative ones once against, so the map shows evidence for (red) and against (blue) "
            "the class at the same time."
        ),
        layers={"fc1": LayerRule("alpha_beta", alpha=2.0, beta=1.0),
                "fc2": LayerRule("alpha_beta", alpha=2.0, beta=1.0)},
    ),
    "zbox": RuleInfo(
        label="ZBox [0, 1] + ε",
        description=(
            "ZBox with pixel bounds [0, 1] on fc1 (deep Taylor decomposition for a bounded input: "
            "empty pixels can receive relevance, showing where missing ink matters) and ε on fc2."
        ),
        layers={"fc1": LayerRule("zbox", low=0.0, high=1.0), "fc2": EPSILON},
    ),
    "gamma": RuleInfo(
        label="γ = 0.25",
        description=(
            "LRP-γ with γ = 0.25 on both layers: positive weights are boosted by a quarter, "
            "a middle ground between ε (all contributions) and z⁺ (positive ones only)."
        ),
        layers={"fc1": LayerRule("gamma", gamma=0.25), "fc2": LayerRule("gamma", gamma=0.25)},
    ),
}
