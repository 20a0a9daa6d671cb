"""Faithfulness benchmark: the trust card's checks, deletion / insertion AOPC, and the choice of the default preset.

``python -m benchmarks.faithfulness [--json] [--n N] [--models default h16 cnn] [--methods …]``

Every figure comes from the trust card's own definition
(:meth:`server.explain.engine.Engine.sanity`, :func:`server.explain.sanity.check`):
the benchmark calls it per digit, exactly as the live card does.

1. **Choosing the default preset** on the *selection* split (official test
   digits 0–4,999, :data:`SELECTION`): each LRP preset's deletion + insertion
   AOPC per digit, and its card pass rate.  Among presets the card passes on at
   least ``CARD_GOAL`` of the digits, the best mean wins, unless the 95 %
   paired-bootstrap interval of its difference to ε contains 0: then ε wins
   the tie, because on this one-hidden-layer ReLU network ε is the exact local
   decomposition (Gradient × Input), not an approximation.
2. **Reporting** on the *report* split (official test digits 5,000–9,999,
   :data:`REPORT`), never used to choose, and on pen-stroke digits (the same
   report digits thinned into strokes, redrawn at random sizes and positions
   and rasterised as the server does): per method (every LRP preset, captum
   method and control) the share of digits on which the card passes, its
   randomisation and deletion checks pass, the median real-vs-copy ρ with the
   random-pair band, deletion AOPC against the least-relevant-ink and
   random-ink orders, insertion AOPC, and deletion + insertion with a 95 %
   bootstrap interval.

The ``cnn`` (a LeNet) gets the same rows: each of its family's presets
(zennit's named composites) and every method its family runs, Grad-CAM and
HiResCAM included; its randomisation cascade is ``fc2``, then every layer
(:data:`server.explain.sanity.CNN_RANDOMIZATIONS`), so its second ρ column is
"all layers".  It has no step 1: the choice rests on ε being the exact
decomposition of a one-hidden-layer MLP, and no cnn preset is exact.

Without ``MNIST_DIR`` it runs on the 500 embedded held-out digits (both splits
then the same digits: a smoke test, not a measurement).
"""

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model_store import load_model
from model_store.datasets import load_embedded, load_idx, mnist_dir_from_env, split_embedded
from model_store.strokes import image_to_strokes
from server.explain import faithfulness as f
from server.explain.engine import Engine, Request, Selection
from server.explain.family import FAMILIES, Family, family_of
from server.explain.methods import METHODS
from server.explain.rules import RULES
from server.explain.sanity import Sanity
from server.raster import rasterize

from .splits import REPORT, SELECTION

MODELS = ("default", "h16", "cnn")


def configs(family: Family, rule: str) -> tuple[tuple[str, str], ...]:
    """A family's rows: every preset, then every other method the family runs, with ``rule`` for the edges."""
    return tuple(("lrp", preset) for preset in family.rules) + tuple(
        (method, rule) for method in family.methods if method != "lrp")


# The MLPs' rows (Grad-CAM needs conv layers) and the cnn's.
CONFIGS = configs(FAMILIES["mlp"], "epsilon")
CNN_CONFIGS = configs(FAMILIES["cnn"], FAMILIES["cnn"].default_rule)
CARD_GOAL = 0.9  # a preset must pass the card on this share of digits to be chosen
CONTROL_GOAL = 0.95  # the card must fail each control on this share of digits
BOOTSTRAP = 2000
EXACT_PRESET = "epsilon"
STROKE_SEED = 2024


@dataclass(frozen=True)
class Row:
    """One method over one set of digits; rates in [0, 1], AOPC in logits, ``(low, high)`` 95 % intervals.

    ``rho_fc2``: the first step of the model's randomisation cascade (``fc2``); ``rho_fc2_fc1`` and
    ``band_fc2_fc1``: its second, ``fc2`` and ``fc1`` for an MLP, every layer for a cnn (the names are the MLP's).
    """

    method: str
    rule: str | None
    control: bool
    passes_card: float
    passes_randomization: float
    randomization_not_applicable: float
    passes_deletion: float
    rho_fc2: float
    rho_fc2_fc1: float
    band_fc2_fc1: tuple[float, float, float]
    deletion: float
    least_deletion: float
    random_deletion: float
    insertion: float
    faithfulness: float
    faithfulness_ci: tuple[float, float]


def official(part: slice, n: int) -> tuple[np.ndarray, str]:
    """The first ``n`` official test digits of ``part`` ``(n, 28, 28)``, or embedded held-out ones without MNIST_DIR."""
    directory = mnist_dir_from_env()
    if directory is not None:
        images = load_idx(directory, "test")[0][part][:n]
        return images, f"official test digits {part.start}–{part.start + len(images) - 1}"
    _, (held_out, _) = split_embedded(*load_embedded())
    images = held_out[:n]
    return images, f"{len(images)} embedded held-out digits (MNIST_DIR is not set)"


def pen_strokes(images: np.ndarray, seed: int = STROKE_SEED) -> np.ndarray:
    """``images`` thinned into pen strokes, drawn at random canvas sizes (10–100 %) and positions, rasterised."""
    rng = np.random.default_rng(seed)
    redrawn = []
    for image in images:
        size = rng.uniform(0.1, 1.0)
        origin = tuple(rng.uniform(0.0, 1.0 - size, size=2))
        redrawn.append(rasterize(image_to_strokes(image, size, origin)))
    return np.stack(redrawn)


def interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of ``values (N,)`` (percentile method, ``BOOTSTRAP`` resamples)."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return round(float(low), 3), round(float(high), 3)


def insertion(scorer: nn.Module, image: np.ndarray, heatmap: np.ndarray, target: int, seed: int) -> float:
    """Insertion AOPC of the logit of ``target``, the map's most relevant pixels first."""
    images = f.insertion_images(image, f.relevance_order(heatmap, seed))
    with torch.no_grad():  # (N, 1, 28, 28): the MLP flattens it, the cnn convolves it
        curve = scorer(torch.from_numpy(images).double()[:, None])[:, target].numpy()
    return f.insertion_aopc(curve)


@dataclass(frozen=True)
class Checked:
    """One method on one digit: the card's report and the insertion AOPC of its map."""

    report: Sanity
    insertion: float

    @property
    def faithfulness(self) -> float:
        return self.report.deletion.aopc + self.insertion


def check_all(engine: Engine, scorer: nn.Module, images: np.ndarray, method: str, rule: str,
              progress: str | None) -> list[Checked]:
    """The card (``Engine.sanity``, predicted class) and insertion AOPC of every image."""
    checked = []
    for index, image in enumerate(tqdm(images, desc=progress, disable=progress is None, leave=False)):
        frame, report = engine.sanity(Request(image, Selection(), method=method, rule=rule))
        checked.append(Checked(report, insertion(scorer, image, frame.heatmap, frame.target, index)))
    return checked


def row(method: str, rule: str, checked: Sequence[Checked]) -> Row:
    """The means and rates of one method over its digits."""
    reports = [item.report for item in checked]

    def mean(values: Sequence[float | None]) -> float:
        defined = [v for v in values if v is not None]
        return round(float(np.mean(defined)), 3) if defined else float("nan")

    bands = [r.randomized[1].band for r in reports if r.randomized[1].band is not None]
    faithfulness = np.array([item.faithfulness for item in checked])
    return Row(method, rule if method == "lrp" else None, METHODS[method].control,
               mean([float(r.passes) for r in reports]),
               mean([float(r.passes_randomization is True) for r in reports]),
               mean([float(r.passes_randomization is None) for r in reports]),
               mean([float(r.passes_deletion) for r in reports]),
               mean([r.randomized[0].rank_correlation for r in reports]),
               mean([r.randomized[1].rank_correlation for r in reports]),
               tuple(round(float(v), 3) for v in np.mean(bands, axis=0)) if bands else (float("nan"),) * 3,
               mean([r.deletion.aopc for r in reports]), mean([r.deletion.least_aopc for r in reports]),
               mean([r.deletion.random_band[1] for r in reports]), mean([item.insertion for item in checked]),
               round(float(faithfulness.mean()), 3), interval(faithfulness))


def choose(engine: Engine, scorer: nn.Module, images: np.ndarray, progress: bool) -> dict[str, object]:
    """The default preset chosen on ``images`` (module docstring, step 1), with the figures behind it."""
    checked = {rule: check_all(engine, scorer, images, "lrp", rule, f"choose {rule}" if progress else None)
               for rule in RULES}
    scores = {rule: np.array([item.faithfulness for item in items]) for rule, items in checked.items()}
    cards = {rule: float(np.mean([item.report.passes for item in items])) for rule, items in checked.items()}
    eligible = [rule for rule in RULES if cards[rule] >= CARD_GOAL]
    best = max(eligible, key=lambda rule: scores[rule].mean()) if eligible else EXACT_PRESET
    differences = {rule: interval(scores[rule] - scores[EXACT_PRESET]) for rule in RULES if rule != EXACT_PRESET}
    tie = best != EXACT_PRESET and differences[best][0] <= 0.0 <= differences[best][1]
    chosen = EXACT_PRESET if tie or best == EXACT_PRESET else best
    return {"chosen": chosen, "best_mean": best, "tie_with_exact": tie,
            "faithfulness": {rule: round(float(scores[rule].mean()), 3) for rule in RULES},
            "card_pass_rate": {rule: round(cards[rule], 3) for rule in RULES},
            "difference_to_epsilon_ci": differences}


def measure(name: str, n: int, methods: Sequence[str], progress: bool) -> dict[str, object]:
    """Step 1 and step 2 of the module docstring for one model."""
    model = load_model(name)
    family = family_of(model)
    engine = Engine(model)
    scorer = model.double().eval()
    report, report_source = official(REPORT, n)
    sources = {"official": (report, report_source),
               "pen strokes": (pen_strokes(report), f"{report_source}, redrawn as pen strokes")}
    result: dict[str, object] = {"family": family.name,
                                 "randomizations": [label for label, _ in family.randomizations], "choice": None}
    if family.name == "mlp":  # step 1 (module docstring): ε is exact on the MLP only
        selection, selection_source = official(SELECTION, n)
        result["choice"] = {"source": selection_source, **choose(engine, scorer, selection, progress)}
    for label, (images, source) in sources.items():
        rows = [row(method, rule, check_all(engine, scorer, images, method, rule,
                                            f"{name} {label} {method} {rule}" if progress else None))
                for method, rule in (CONFIGS if family.name == "mlp" else CNN_CONFIGS) if method in methods]
        result[label] = {"source": source, "rows": [asdict(r) for r in rows]}
    return result


def markdown(name: str, result: dict[str, object]) -> str:
    """The tables of one model."""
    lines = [f"**{name}**", ""]
    randomizations = result["randomizations"]
    assert isinstance(randomizations, list)
    top, whole = randomizations[0], "all layers" if randomizations[-1] == "all" else randomizations[-1]
    for label in ("official", "pen strokes"):
        part = result[label]
        assert isinstance(part, dict)
        lines += [f"*{part['source']}*", "",
                  f"| method | card passes | randomisation passes (n/a) | deletion passes | ρ {top} "
                  f"| ρ {whole} (random pairs) | deletion AOPC (least / random ink) | insertion AOPC "
                  "| deletion + insertion (95 % CI) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted((Row(**item) for item in part["rows"]), key=lambda r: -r.faithfulness):
            control = " (control)" if r.control else ""
            label_text = f"LRP `{r.rule}`" if r.method == "lrp" else f"`{r.method}`{control}"
            low, median, high = r.band_fc2_fc1
            lines.append(
                f"| {label_text} | {r.passes_card:.1%} | {r.passes_randomization:.1%} "
                f"({r.randomization_not_applicable:.0%}) | {r.passes_deletion:.1%} | {r.rho_fc2:.2f} | "
                f"{r.rho_fc2_fc1:.2f} ({low:.2f} / {median:.2f} / {high:.2f}) | {r.deletion:.2f} "
                f"({r.least_deletion:.2f} / {r.random_deletion:.2f}) | {r.insertion:.2f} | {r.faithfulness:.2f} "
                f"({r.faithfulness_ci[0]:.2f}…{r.faithfulness_ci[1]:.2f}) |")
        lines.append("")
    choice = result["choice"]
    if choice is None:  # a cnn: no default preset chosen here
        return "\n".join(lines)
    assert isinstance(choice, dict)
    lines += [f"Choice on {choice['source']}: deletion + insertion "
              + ", ".join(f"`{rule}` {value:.2f}" for rule, value in choice["faithfulness"].items())
              + "; card passes "
              + ", ".join(f"`{rule}` {value:.1%}" for rule, value in choice["card_pass_rate"].items())
              + "; difference to ε (95 % CI) "
              + ", ".join(f"`{rule}` {low:+.2f}…{high:+.2f}" for rule, (low, high)
                          in choice["difference_to_epsilon_ci"].items())
              + f". Best mean: `{choice['best_mean']}`; chosen: **`{choice['chosen']}`**"
              + (" (a tie with ε, which is exact on this network)" if choice["tie_with_exact"] else "") + ".", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of Markdown")
    parser.add_argument("--save-json", metavar="PATH", help="also write that JSON object to PATH")
    parser.add_argument("--n", type=int, default=500, help="digits per split and source (default 500)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                        help="methods of the report (default: all; the choice always measures every LRP preset)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    results = {name: measure(name, args.n, args.methods, progress=not args.json) for name in args.models}
    seconds = time.perf_counter() - started
    document = json.dumps({"digits": args.n, "seconds": round(seconds, 1), "card_goal": CARD_GOAL,
                           "control_goal": CONTROL_GOAL, "steps": f.STEPS, "pixels_per_step": f.PIXELS_PER_STEP,
                           "models": results}, indent=1)
    if args.save_json:
        with open(args.save_json, "w", encoding="utf-8") as file:
            file.write(document + "\n")
    if args.json:
        print(document)
        return
    print(f"Trust card and faithfulness, predicted class, {args.n} digits per split and source; {seconds:.0f} s.\n")
    for name, result in results.items():
        print(markdown(name, result))


if __name__ == "__main__":
    main()
