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

Sign-faithful presets: every preset puts ε on ``fc2`` and its own rule on
``fc1`` only (Montavon et al. 2019, §10.2; Kohlbrenner et al. 2020, "Towards
best practice in explaining neural network decisions with LRP").  z⁺, αβ and
γ assume that the relevance entering their layer is positive; on ``fc2`` it is
the logit, negative for every class but the likely ones, and they then hand
a neuron the opposite sign of its real push ``a_j · w2[c, j]``.  ε on ``fc2``
gives ``R(j→c) = a_j w2[c, j] · z_c / (z_c ± ε)``: the sign of the push for
every class.  Below ``fc2`` the relevance reaching ``fc1`` sits on active
neurons only, where ``z_j > 0`` and the lower rules are safe.

A neuron alone starts from its pre-activation ``z_j``.  For a silent neuron
(``z_j ≤ 0``) z⁺, αβ, γ and ZBox would paint the ink that pushes it toward
firing as holding it back (z⁺: every share carries the sign of ``z_j``), and γ's
denominator can come arbitrarily close to zero.  Its map is therefore always
the ε decomposition of ``z_j`` (:data:`SILENT_NEURON_RULE`): positive pixels
push the neuron toward firing, negative ones away from it, whatever the preset.
"""

from dataclasses import dataclass, field
from typing import Literal

RuleKind = Literal["epsilon", "zplus", "alpha_beta", "gamma", "zbox", "flat"]

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
# The MLP preset a new visitor starts with. Chosen by measurement on official test digits 0–399
# (docs/explanations.md, "The default preset"): it ties with γ on deletion + insertion (95 % CIs contain 0),
# and a tie goes to ε, exact on this network.
DEFAULT_RULE = "epsilon"

# The rule of a silent neuron's map alone, whatever the preset: see the module docstring.
SILENT_NEURON_RULE = EPSILON

# Every preset has ε on fc2, so a rule changes only the pixel map: said once, added to every description.
ONLY_THE_PIXEL_MAP = (" On this network the rule changes only the pixel map: the hidden neurons' relevance and "
                      "the edges are ε on the output layer under every preset.")

RULES: dict[str, RuleInfo] = {
    "epsilon": RuleInfo(
        label="ε (= Gradient × Input)",
        description=(
            "LRP-ε with ε = 1e-6 on both layers, the default. On this ReLU network, with relevance started "
            "from the logit, it equals Gradient × Input, the exact local decomposition: each pixel's share is "
            "its value times how much the logit would change with it. Each bias takes its share of the "
            "relevance, so the map's sum differs from the logit by what the biases took (negative biases "
            "give the pixels more)." + ONLY_THE_PIXEL_MAP
        ),
        layers={"fc1": EPSILON, "fc2": EPSILON},
    ),
    "zplus": RuleInfo(
        label="z⁺ (ε on top)",
        description=(
            "LRP-z⁺ on the hidden layer, ε on the output layer: each hidden neuron gets the sign of its "
            "real push on the class, then passes its relevance to the ink along positive weights only. "
            "Pixels carry the sign of the neuron they feed: red where ink feeds neurons that speak for "
            "the class, blue where it feeds neurons that speak against it." + ONLY_THE_PIXEL_MAP
        ),
        layers={"fc1": LayerRule("zplus"), "fc2": EPSILON},
    ),
    "alpha2beta1": RuleInfo(
        label="α2β1 (ε on top)",
        description=(
            "LRP-αβ with α = 2, β = 1 on the hidden layer, ε on the output layer: within each hidden "
            "neuron, positive contributions count twice and negative ones once against, so the map shows "
            "evidence for and against at once. Without biases 2 − 1 = 1 and it conserves relevance; with "
            "them each sign's bias takes its own share, so the map can sum to more or to less than reached "
            "the hidden layer." + ONLY_THE_PIXEL_MAP
        ),
        layers={"fc1": LayerRule("alpha_beta", alpha=2.0, beta=1.0), "fc2": EPSILON},
    ),
    "zbox": RuleInfo(
        label="ZBox [0, 1] (ε on top)",
        description=(
            "ZBox with pixel bounds [0, 1] on the hidden layer (deep Taylor decomposition for a bounded "
            "input: empty pixels can receive relevance, showing where missing ink matters), ε on the "
            "output layer." + ONLY_THE_PIXEL_MAP
        ),
        layers={"fc1": LayerRule("zbox", low=0.0, high=1.0), "fc2": EPSILON},
    ),
    "gamma": RuleInfo(
        label="γ = 0.25 (ε on top)",
        description=(
            "LRP-γ with γ = 0.25 on the hidden layer, ε on the output layer: positive weights are boosted "
            "by a quarter, a middle ground between ε (all contributions) and z⁺ (positive ones only)."
            + ONLY_THE_PIXEL_MAP
        ),
        layers={"fc1": LayerRule("gamma", gamma=0.25), "fc2": EPSILON},
    ),
}
