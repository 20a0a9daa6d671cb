"""The page's honest scales, order-free selection and "Can I trust this map?" card, in a real browser.

Same harness as tests/test_page.py (Debian chromium via Playwright, a real server process).
"""

from typing import Any

import numpy as np
import pytest
from test_page import (  # noqa: F401
    WAIT_MS,
    Strokes,
    Visit,
    browser,
    click_neuron,
    draw_with_mouse,
    golden,
    server,
    settle,
    shown_heatmap,
    visit,
)

from support import decode_array

pytestmark = pytest.mark.browser


def colours(visit: Visit, values: np.ndarray, scale: float) -> np.ndarray:
    """The page's diverging colours (static/colormap.js) of ``values / scale``, as (784, 3) bytes."""
    scaled = (values.reshape(-1) / scale).astype(float).tolist()
    return np.asarray(visit.page.evaluate(
        "async (values) => { const { diverging } = await import('/static/colormap.js');"
        " return values.map((v) => diverging(v)); }", scaled), dtype=np.int16)


def weakest_supporting_neuron(frame: dict[str, Any]) -> int:
    """An active neuron with a small but real share of the class's relevance (0.5–5 %)."""
    column = decode_array(frame["edges"])  # R(j→target), docs/protocol.md
    shares = np.abs(column) / np.abs(column).sum()
    candidates = [j for j in np.argsort(shares) if 0.005 <= shares[j] <= 0.05]
    assert candidates, "no weak neuron in this drawing"
    return int(candidates[0])


def test_a_weak_neuron_s_crp_map_is_drawn_faintly_on_its_class_scale(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[3])
    lrp = settle(visit)
    j = weakest_supporting_neuron(lrp)
    click_neuron(visit.page, "hidden", j)
    crp = visit.wire.wait_received(lambda m: m["type"] == "frame" and m["mode"] == "crp" and m["hidden"] == j)
    settle(visit)
    crp_map = decode_array(crp["heatmap"])
    own = float(np.abs(crp_map).max())
    assert 0 < own < crp["class_max_abs"] / 3  # weak: well below the class map's peak
    shown = shown_heatmap(visit.page)
    assert np.abs(shown - colours(visit, crp_map, crp["class_max_abs"])).max() <= 2
    # Faint: no pixel as dark as the class map's darkest; the lightest channel stays near white.
    darkest = colours(visit, np.array([own]), crp["class_max_abs"])[0]
    assert darkest.min() > 150
    note = visit.page.locator("[data-part=scale-note]").inner_text()
    assert f"Neuron {j} carries" in note and "%" in note and "scale of the whole LRP map of '3'" in note

    visit.page.locator("#own-scale").check()
    visit.page.wait_for_function("() => document.querySelector('[data-part=scale-note]').textContent"
                                 ".includes(\"this map's own scale\")", timeout=WAIT_MS)
    assert np.abs(shown_heatmap(visit.page) - colours(visit, crp_map, own)).max() <= 2


def test_tapping_a_class_after_a_neuron_keeps_the_neuron(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[4])
    frame = settle(visit)
    assert frame["target"] == 4
    j = int(np.argmax(decode_array(frame["edges"])))
    click_neuron(visit.page, "hidden", j)
    click_neuron(visit.page, "output", 9)
    crp = visit.wire.wait_received(lambda m: m["type"] == "frame" and m["output"] == 9 and m["hidden"] == j)
    assert crp["mode"] == "crp"
    settle(visit)
    assert visit.page.locator("[data-part=selected-hidden] .selection-value").inner_text() == f"neuron {j}"
    assert visit.page.locator("[data-part=selected-output] .selection-value").inner_text() == "'9'"
    visit.page.select_option("#method", "saliency")
    visit.page.locator("[data-part=selection-note]").wait_for(state="visible", timeout=WAIT_MS)
    assert "does not change its map" in visit.page.locator("[data-part=selection-note]").inner_text()
    settle(visit)
    assert visit.page.locator(f".neuron.hidden[data-index='{j}']").get_attribute("aria-pressed") != "true"


def test_the_trust_card_shows_the_checks_with_numbers(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[2])
    settle(visit)
    visit.wire.wait_received(lambda m: m["type"] == "sanity")
    verdict = visit.page.locator("[data-part=sanity-verdict]")
    verdict.wait_for(state="visible", timeout=WAIT_MS)
    # The card is current (not "Checking…") once it shows the answer for the map on screen: the last one.
    visit.page.wait_for_function("() => document.querySelector('.trust-status').textContent === ''", timeout=WAIT_MS)
    report = [m for m in visit.wire.received if m["type"] == "sanity"][-1]
    assert verdict.inner_text() == report["verdict"]
    captions = visit.page.locator("[data-part=trust] figcaption").all_inner_texts()
    for item in report["randomized"]:
        assert any(f"ρ = {item['rank_correlation']:.2f}" in caption.replace("\u00a0", " ") for caption in captions)
    deletion = visit.page.locator("[data-part=deletion]").inner_text()
    assert "on average" in deletion and any(ch.isdigit() for ch in deletion)
    # The plot has axes (the score against the pixels removed) and the insertion curve beside the deletion curves.
    plot = visit.page.evaluate("""() => {
      const svg = document.querySelector('.trust-plot svg');
      return { axes: [...document.querySelectorAll('.trust-plot .plot-box span')].map((t) => t.textContent),
               insertion: svg.querySelector('.curve-insertion')?.getAttribute('points').split(' ').length ?? 0 };
    }""")
    removed = 20 * report["deletion"]["pixels_per_step"]
    assert {"score", "pixels removed or put back", "0", str(removed)} <= set(plot["axes"]), plot
    assert plot["insertion"] == len(report["deletion"]["insertion"]) == 21
    insertion = report["deletion"]["insertion_aopc"]
    shown = f"{insertion:.0f}" if abs(insertion) >= 100 else f"{insertion:#.3g}"  # heatmap.js formatNumber
    assert f"raises the score by {shown}" in deletion.replace("−", "-"), (deletion, insertion)
    flow = visit.page.locator("[data-part=conservation]").inner_text()
    assert "starts from the score (logit) of '2'" in flow and "bias holds the rest" in flow
