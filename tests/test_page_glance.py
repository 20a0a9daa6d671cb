"""A page a visitor understands at a glance (issue 26), in a real browser against a real server.

Defects a new visitor met first: a false "Very slow connection" after every
pause, a tablet stage that jumped under the pen, an exported picture whose
scale was not the one on screen, a kiosk reset that played off screen.
"""

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page
from test_page import (
    SCREEN_SIZES,
    WAIT_MS,
    Strokes,
    Visit,
    browser,
    click_neuron,
    draw_with_mouse,
    draw_with_touch,
    golden,
    open_page,
    server,
    settle,
    strongest_hidden,
)

from model_store.examples import load_examples
from support import decode_array

pytestmark = pytest.mark.browser
__all__ = ["browser", "golden", "server"]  # module fixtures shared with test_page

# Every text the status line shows while it is tinted (status.js), recorded as it changes.
RECORD_STATUS = """() => {
  const line = document.getElementById('status');
  window.statusSeen = [];
  new MutationObserver(() => window.statusSeen.push(line.textContent))
    .observe(line, { childList: true, characterData: true, subtree: true });
}"""


def draw(visit: Visit, strokes: Strokes) -> None:
    """Draw as a visitor of that size would: a finger on a touch page, else the mouse."""
    if visit.page.evaluate("() => navigator.maxTouchPoints > 0"):
        draw_with_touch(visit, strokes)
    else:
        draw_with_mouse(visit, strokes)


def wait_paused(visit: Visit, after: int) -> None:
    """Until the page asked for the sanity checks (it does once the pen rests), then one more second:
    twice the status line's "very slow" threshold (status.js VERY_SLOW_LAG_MS)."""
    visit.wire.wait_sent(lambda m: m["type"] == "sanity", after=after)
    visit.page.wait_for_timeout(1000)


@pytest.fixture
def laptop(browser: Browser, server: str) -> Iterator[Visit]:
    opened = open_page(browser, server, 1366, 768)
    yield opened
    opened.context.close()
    assert not [e for e in opened.errors if "favicon" not in e and "status of 503" not in e], opened.errors


# ---------- defect 1: requests that no frame answers never make the status "slow" ----------

def test_a_pause_and_a_neuron_tap_keep_the_status_live(laptop: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = laptop.page, laptop.wire
    before = len(wire.sent)
    draw_with_mouse(laptop, golden[3])
    frame = settle(laptop)
    page.evaluate(RECORD_STATUS)  # from here on every frame came in milliseconds: "very slow" would be false
    wait_paused(laptop, before)  # the sanity request is answered by a `sanity` message, never by a frame
    before = len(wire.sent)
    click_neuron(page, "hidden", strongest_hidden(frame))
    settle(laptop)
    wait_paused(laptop, before)
    page.locator(".question .digit-button").first.click()  # a counterfactual: its own answer, no frame
    wire.wait_received(lambda m: m["type"] in {"counterfactual", "error"} and m["seq"] is not None, after=0)
    page.wait_for_timeout(1000)
    seen = page.evaluate("() => window.statusSeen")
    # A loaded machine may honestly be slow for a moment (amber); past 500 ms it would be the old false alarm.
    assert seen and not [text for text in seen if text.startswith("Very slow")], seen
    assert page.locator("#status").get_attribute("data-tone") == "ok"


# ---------- defect 2: the pad never moves while a visitor draws ----------

# Each animation frame: the pad's box on screen and whether the network shows its strip.
RECORD_STAGE = """() => {
  window.stageSeen = new Set();
  const pad = document.getElementById('pad');
  const all = document.getElementById('network-all');
  const look = () => {
    const box = pad.getBoundingClientRect();
    window.stageSeen.add(`${box.left},${box.top},${box.width},${box.height} strip=${!all.hidden}`);
    requestAnimationFrame(look);
  };
  look();
}"""

# The status line's longest texts (status.js): the header must keep its height with each.
LONGEST_STATUS = ["Very slow connection · 12.5 s · 60 fps", "Reconnecting… (server restarting) · your drawing is kept",
                  "Disconnected (code 1008) · draw to reconnect"]


@pytest.mark.parametrize("name", list(SCREEN_SIZES))
def test_the_pad_never_moves_while_drawing(browser: Browser, server: str, golden: dict[int, Strokes], name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height, touch=width < 1100)
    try:
        page, wire = visit.page, visit.wire
        page.evaluate(RECORD_STAGE)
        for stroke in golden[3]:  # stroke by stroke, each followed by a pause (and its sanity request)
            before = len(wire.sent)
            draw(visit, [stroke])
            settle(visit)
            wait_paused(visit, before)
        seen = page.evaluate("() => [...window.stageSeen]")
        assert len(seen) == 1, seen
        pad_top = page.evaluate("""(texts) => texts.map((text) => {
            const line = document.getElementById('status');
            line.textContent = text;
            return document.getElementById('pad').getBoundingClientRect().top; })""", LONGEST_STATUS)
        assert set(pad_top) == {float(seen[0].split(",")[1])}, (pad_top, seen)
    finally:
        visit.context.close()


# ---------- defect 3: the exported picture shows exactly the legend on screen ----------

# Every text the page writes into a canvas, recorded (the picture's text is drawn with fillText).
RECORD_CANVAS_TEXT = """
  window.canvasTexts = [];
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    window.canvasTexts.push(String(text));
    return fillText.call(this, text, ...rest);
  };
"""


def legend_texts(page: Page) -> list[str]:
    return [text for text in page.locator("#legend .legend-ticks span, #legend .legend-words span").all_inner_texts()
            if text.strip()]


@pytest.mark.parametrize("method", ["lrp", "saliency"])
def test_the_exported_picture_shows_the_legend_on_screen(
        browser: Browser, server: str, golden: dict[int, Strokes], tmp_path: Path, method: str) -> None:
    visit = open_page(browser, server)
    try:
        page, wire = visit.page, visit.wire
        page.context.add_init_script(RECORD_CANVAS_TEXT)
        page.reload()
        page.wait_for_selector("#status[data-status=open]", timeout=WAIT_MS)
        page.wait_for_selector(".neuron.hidden", timeout=WAIT_MS)
        if method != "lrp":
            page.select_option("#method", method)
            wire.wait_received(lambda m: m["type"] == "frame" and m["method"] == method)
        draw_with_mouse(visit, golden[4])
        frame = settle(visit)
        if method == "lrp":  # a CRP map, painted on its class's LRP scale: its own maximum is smaller
            j = strongest_hidden(frame)
            click_neuron(page, "hidden", j)
            wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j and m["mode"] == "crp")
        else:
            wire.wait_received(lambda m: m["type"] == "frame" and m["method"] == method and m["heatmap"] is not None)
        settle(visit)
        shown = legend_texts(page)
        assert len(shown) >= 3, shown  # low, 0, high (one-sided: 0, max) and words
        page.evaluate("() => { window.canvasTexts = []; }")
        with page.expect_download() as png:
            page.click("#export-png")
        png.value.save_as(tmp_path / "panel.png")
        written: list[str] = page.evaluate("() => window.canvasTexts")
        assert [text for text in shown if text not in written] == [], (shown, written)
        numbers = [text for text in written if text.lstrip("+−-").replace(".", "").replace("e", "").isdigit()]
        assert set(numbers) <= set(shown), (numbers, shown)  # no other number than the legend's
    finally:
        visit.context.close()


# ---------- defect 4: the kiosk reset returns to the top ----------

def test_the_kiosk_reset_scrolls_back_to_the_top(browser: Browser, server: str, golden: dict[int, Strokes]) -> None:
    visit = open_page(browser, server + "/?kiosk&idle=2", 1920, 1080, touch=True)
    try:
        page = visit.page
        draw_with_touch(visit, golden[1])
        settle(visit)
        page.evaluate("() => window.scrollTo(0, document.documentElement.scrollHeight)")  # no wheel: not a visitor
        assert page.evaluate("() => window.scrollY") > 0
        page.wait_for_selector("#cta:not([hidden])", timeout=WAIT_MS)
        page.wait_for_function("() => window.scrollY === 0", timeout=1000)
        cta: dict[str, Any] = page.evaluate(
            "() => { const box = document.getElementById('cta').getBoundingClientRect();"
            " return { top: box.top, bottom: box.bottom, height: innerHeight }; }")
        assert 0 <= cta["top"] and cta["bottom"] <= cta["height"]
    finally:
        visit.context.close()


# ---------- a first minute that teaches (part) ----------

def test_keyboard_hints_only_where_there_is_a_keyboard(browser: Browser, server: str) -> None:
    hints = "() => [...document.querySelectorAll('.keys-only')].map((e) => e.getClientRects().length > 0)"
    for width, height, touch, shown in [(390, 844, True, False), (1366, 768, False, True)]:
        visit = open_page(browser, server, width, height, touch=touch)
        try:
            visit.page.wait_for_selector("#knockout-title", state="attached", timeout=WAIT_MS)
            seen = visit.page.evaluate(hints)
            assert len(seen) >= 3 and set(seen) == {shown}, (width, seen)
            assert ("Tab into the diagram" in visit.page.locator(".key[data-family=mlp]").inner_text()) == shown
        finally:
            visit.context.close()


@pytest.mark.parametrize("name", list(SCREEN_SIZES))
def test_an_example_is_one_tap_away_on_a_blank_pad(browser: Browser, server: str, name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height, touch=width < 1100)
    try:
        page, wire = visit.page, visit.wire
        button = page.locator("#example-now")
        button.wait_for(state="visible", timeout=WAIT_MS)
        box = button.bounding_box()
        assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= height  # on the stage
        before = len(wire.sent)
        button.click()
        first = load_examples()[0]
        wire.wait_received(lambda m: m["type"] == "frame" and m["prediction"] == first["label"]
                           and (m["seq"] or 0) > 0, after=0)
        assert [m for m in wire.sent[before:] if m["type"] == "stroke"]
        button.wait_for(state="hidden", timeout=WAIT_MS)  # the pad has ink: the offer goes
    finally:
        visit.context.close()


# ---------- smaller defects (part) ----------

def test_undo_and_replay_icons_differ_and_the_templates_label_is_one_block(laptop: Visit) -> None:
    page = laptop.page
    icon = "(id) => getComputedStyle(document.getElementById(id), '::before').content"
    assert page.evaluate(icon, "undo") != page.evaluate(icon, "replay")
    assert "↺" not in page.evaluate(icon, "replay")
    # The label's words wrap as one paragraph beside the box, not as columns of separate flex items.
    parts = page.evaluate("() => [...document.querySelector('.templates-toggle').childNodes]"
                          ".filter((n) => n.nodeType === 1 || n.textContent.trim()).map((n) => n.nodeName)")
    assert parts == ["INPUT", "SPAN"], parts


def knock_out_the_strongest_neuron(visit: Visit, strokes: Strokes) -> int:
    """Draw ``strokes``, select the hidden neuron with the most relevance and press its knock-out; its index."""
    page, wire = visit.page, visit.wire
    draw_with_mouse(visit, strokes)
    j = strongest_hidden(settle(visit))
    click_neuron(page, "hidden", j)
    wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
    page.locator(".knockout-toggle").click()
    return j


def test_a_knocked_out_neuron_says_switched_off(laptop: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = laptop.page, laptop.wire
    j = knock_out_the_strongest_neuron(laptop, golden[3])
    wire.wait_received(lambda m: m["type"] == "frame" and j in m["knockout"] and m["hidden"] == j)
    settle(laptop)
    summary = page.locator("#summary").inner_text()
    assert f"Hidden neuron {j} is switched off" in summary and "silent" not in summary, summary


# ---------- contrast of every text on the page, the diagram's labels included ----------

# Every visible text (an element's own non-blank text nodes, and SVG text) against the colour under it:
# the nearest opaque background of its ancestors, or for a neuron's label its circle's fill. Disabled
# controls are exempt (WCAG 2.2 SC 1.4.3). Large text: >= 24 px, or >= 18.66 px and bold.
EVERY_TEXT_CONTRAST = """() => {
  const rgba = (colour) => (colour.match(/[\\d.]+/g) || ['0', '0', '0', '0']).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map((c) => { const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; }).reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const blend = (colour, alpha, base) => colour.slice(0, 3).map((c, i) => c * alpha + base[i] * (1 - alpha));
  const opacity = (element) => { let a = 1; for (let n = element; n; n = n.parentElement) a *= Number(getComputedStyle(n).opacity); return a; };
  const under = (element) => {
    const circle = element.closest('.neuron')?.querySelector('circle:not(.hit)');
    if (element instanceof SVGElement && circle) {
      const style = getComputedStyle(circle);
      return blend(rgba(style.fill), Number(style.fillOpacity), [255, 255, 255]);
    }
    for (let node = element; node; node = node.parentElement) {
      const colour = rgba(getComputedStyle(node).backgroundColor);
      if (colour[3] === undefined || colour[3] >= 0.99) return colour;
    }
    return [255, 255, 255];
  };
  const texts = [...document.querySelectorAll('body *')].filter((element) =>
    [...element.childNodes].some((node) => node.nodeType === 3 && node.textContent.trim()));
  return texts.filter((element) => {
    const box = element.getBoundingClientRect();
    const style = getComputedStyle(element);
    return box.width > 1 && box.height > 1 && style.visibility !== 'hidden' && element.getClientRects().length
      && !element.closest(':disabled, .visually-hidden, [aria-hidden=true]');
  }).map((element) => {
    const style = getComputedStyle(element);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const colour = rgba(element instanceof SVGElement ? style.fill : style.color);
    const base = under(element);
    const shown = blend(colour, (colour[3] ?? 1) * opacity(element), base); // faded text reads as its blend
    return { text: element.textContent.trim().slice(0, 40), ratio: ratio(shown, base), need: large ? 3 : 4.5 };
  });
}"""


@pytest.mark.parametrize("name", ["phone-390x844", "laptop-1366x768"])
def test_every_text_has_enough_contrast(browser: Browser, server: str, golden: dict[int, Strokes], name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height, touch=width < 700)
    try:
        page, wire = visit.page, visit.wire
        draw(visit, golden[4])
        j = strongest_hidden(settle(visit))
        click_neuron(page, "hidden", j)
        wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
        page.locator(".knockout-toggle").click()  # a knocked-out label too (it measured 3.72:1)
        wire.wait_received(lambda m: m["type"] == "frame" and j in m["knockout"])
        settle(visit)
        measured = page.evaluate(EVERY_TEXT_CONTRAST)
        assert len(measured) > 100 and any(m["text"] == str(j) for m in measured)
        low = [(m["text"], round(m["ratio"], 2)) for m in measured if m["ratio"] < m["need"]]
        assert low == []
    finally:
        visit.context.close()


# ---------- the first minute: an example draws itself on arrival until the first touch ----------

def quiet_for(visit: Visit, seconds: float, limit_s: float = 30.0) -> None:
    """Until the page has sent no stroke for ``seconds`` (an example finished drawing), at most ``limit_s``."""
    page, wire = visit.page, visit.wire
    for _ in range(int(limit_s / 0.25)):
        count = len(wire.sent)
        page.wait_for_timeout(seconds * 1000)
        if not [m for m in wire.sent[count:] if m["type"] == "stroke"]:
            return
    raise AssertionError(f"the page kept sending strokes for {limit_s} s")


@pytest.mark.parametrize("name", ["phone-390x844", "laptop-1366x768"])
def test_an_example_draws_itself_on_arrival_until_the_pad_is_touched(browser: Browser, server: str,
                                                                     golden: dict[int, Strokes], name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height, touch=width < 700, motion="no-preference")
    try:
        page, wire = visit.page, visit.wire
        first = load_examples()[0]
        # Nobody touched the page: the first example is drawn stroke by stroke and the network reads it.
        wire.wait_received(lambda m: m["type"] == "frame" and m["prediction"] == first["label"] and (m["seq"] or 0) > 0)
        assert [m for m in wire.sent if m["type"] == "stroke"]
        assert page.locator("#arrival-hint").is_visible()
        hint = page.locator("#arrival-hint").bounding_box()
        pad = page.locator("#pad").bounding_box()
        assert hint is not None and pad is not None and hint["height"] <= 0.2 * pad["height"]  # the pad stays visible
        touched = len(wire.sent)
        draw(visit, golden[3])  # the first touch: on the pad, so the example gives way to a blank pad
        frame = settle(visit)
        assert page.locator("#arrival-hint").is_hidden()
        # (the example may still have sent a point or two before the touch landed)
        kinds = [m["type"] for m in wire.sent[touched:]]
        assert "clear" in kinds, kinds
        last_clear = touched + len(kinds) - 1 - kinds[::-1].index("clear")
        ids = {m["id"] for m in wire.sent[last_clear:] if m["type"] == "stroke"}
        assert len(ids) == len(golden[3]), ids  # after it, the visitor's strokes alone
        assert frame["prediction"] == 3
        # No example follows: nothing but the visitor's own strokes after the touch.
        drawn = len(wire.sent)
        page.wait_for_timeout(2500)  # twice arrival.js ARRIVAL_PAUSE_MS
        assert [m["type"] for m in wire.sent[drawn:] if m["type"] in {"stroke", "clear"}] == []
    finally:
        visit.context.close()


def test_a_touch_elsewhere_lets_the_example_finish_and_stops_the_next(browser: Browser, server: str) -> None:
    visit = open_page(browser, server, motion="no-preference")
    try:
        page, wire = visit.page, visit.wire
        wire.wait_sent(lambda m: m["type"] == "stroke")
        touched = len(wire.sent)
        page.locator(".neuron.output[data-index='5']").click()  # explores the example being drawn
        quiet_for(visit, 2.5)  # twice the arrival pause: the next example would have started
        after = [m["type"] for m in wire.sent[touched:]]
        assert "select" in after and "clear" not in after, after  # the same example, never a next one
        assert page.locator("#arrival-hint").is_hidden()
    finally:
        visit.context.close()


def test_no_example_draws_itself_for_a_visitor_who_asked_for_reduced_motion(browser: Browser, server: str) -> None:
    still = open_page(browser, server)  # prefers-reduced-motion: reduce
    try:
        still.page.wait_for_timeout(2000)
        assert not [m for m in still.wire.sent if m["type"] == "stroke"]
        assert still.page.locator("#arrival-hint").is_hidden()
        assert still.page.locator("#example-now").is_visible()  # one tap away instead
    finally:
        still.context.close()


# ---------- the diagram suggests the neurons worth tapping; every neuron's name says what it shows ----------

RANK_BADGES = """() => {
  const neurons = [...document.querySelectorAll('#network .neuron.hidden')];
  return [...document.querySelectorAll('#network .ranks .rank')].map((badge, k) =>
    [badge.getAttribute('visibility'), badge.textContent, Number(neurons[k].dataset.index)])
    .filter(([visibility]) => visibility === 'visible').map(([, text, j]) => [Number(text), j]);
}"""


def expected_ranks(frame: dict[str, Any]) -> list[int]:
    """The three hidden neurons with the most positive relevance for the frame's class (ties by index)."""
    edges = decode_array(frame["edges"])
    return sorted((j for j in range(len(edges)) if edges[j] > 0), key=lambda j: (-edges[j], j))[:3]


@pytest.mark.parametrize("name", ["phone-390x844", "laptop-1366x768"])
def test_the_most_relevant_neurons_carry_their_rank_and_every_neuron_says_what_it_shows(
        browser: Browser, server: str, golden: dict[int, Strokes], name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height, touch=width < 700)
    try:
        page = visit.page
        assert page.evaluate(RANK_BADGES) == []  # a blank pad: nothing is relevant yet
        draw(visit, golden[3])
        frame = settle(visit)
        page.wait_for_timeout(100)
        top = expected_ranks(frame)
        assert len(top) == 3
        shown = {int(j) for j in page.locator("#network .neuron.hidden").evaluate_all(
            "(groups) => groups.map((g) => g.dataset.index)")}
        # A phone's strip shows the neurons of largest |relevance|: a badge for each ranked one in view.
        ranked = [[place + 1, j] for place, j in enumerate(top) if j in shown]
        assert ranked[0] == [1, top[0]] and sorted(page.evaluate(RANK_BADGES)) == ranked
        name_of = page.locator(f"#network .neuron.hidden[data-index='{top[0]}']").get_attribute("aria-label") or ""
        assert name_of.startswith(f"Hidden neuron {top[0]}: fires ") and "for '3'" in name_of, name_of
        assert name_of.endswith("most relevant 1"), name_of
        output = page.locator("#network .neuron.output[data-index='3']").get_attribute("aria-label") or ""
        assert output.startswith("Output neuron for digit 3: ") and output.endswith("the prediction"), output
    finally:
        visit.context.close()


def test_why_not_8_is_marked_in_the_diagram_and_its_caption(laptop: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = laptop.page, laptop.wire
    draw_with_mouse(laptop, golden[3])
    settle(laptop)
    page.locator("#versus").select_option("8")
    wire.wait_received(lambda m: m["type"] == "frame" and m["mode"] == "contrast" and m["versus"] == 8)
    settle(laptop)
    caption = page.locator("#network .caption").last.text_content() or ""
    assert "why '3' and not '8'" in caption, caption
    marked = page.evaluate("""() => {
      const frame = document.querySelector('#network .versus-frame').getBoundingClientRect();
      const eight = document.querySelector('#network .neuron.output[data-index="8"] circle').getBoundingClientRect();
      return document.querySelector('#network .versus-frame').getAttribute('visibility') === 'visible'
        && frame.left <= eight.left && frame.right >= eight.right && frame.top <= eight.top && frame.bottom >= eight.bottom;
    }""")
    assert marked
    assert "the digit it is compared with" in (page.locator("#network .neuron.output[data-index='8']").get_attribute("aria-label") or "")


def test_key_v_on_an_output_the_arrows_selected_contrasts_it_with_the_prediction(laptop: Visit,
                                                                                golden: dict[int, Strokes]) -> None:
    page, wire = laptop.page, laptop.wire
    draw_with_mouse(laptop, golden[3])
    settle(laptop)
    page.locator("#network .neuron.output[data-index='7']").focus()
    sent = len(wire.sent)
    page.keyboard.press("ArrowRight")  # arrows select what they reach: output 8
    assert wire.wait_sent(lambda m: m["type"] == "select", after=sent)["output"] == 8
    settle(laptop)
    sent = len(wire.sent)
    page.keyboard.press("v")
    message = wire.wait_sent(lambda m: m["type"] == "select", after=sent)
    assert (message["output"], message["versus"]) == (3, 8)


def test_diagram_lines_pass_under_the_captions(laptop: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(laptop, golden[3])
    settle(laptop)
    covered = laptop.page.evaluate("""() => [...document.querySelectorAll('#network .caption')].map((text) => {
      const plate = text.previousElementSibling;
      const edges = document.querySelector('#network .edges');
      if (!plate?.classList.contains('caption-plate')) return [text.textContent, 'no plate'];
      const [p, t] = [plate.getBoundingClientRect(), text.getBoundingClientRect()];
      const under = edges.compareDocumentPosition(plate) & Node.DOCUMENT_POSITION_FOLLOWING;  // painted after the lines
      const fill = getComputedStyle(plate).fill;
      return [text.textContent, Boolean(under) && p.left <= t.left && p.right >= t.right && p.top <= t.top + 1
              && p.bottom >= t.bottom - 1 && fill === 'rgb(255, 255, 255)'];
    })""")
    assert len(covered) >= 3 and all(ok is True for _, ok in covered), covered


# ---------- clipped text: the verdict beside the buttons, an empty map's words beside a phone's heatmap ----------

VERDICT_FITS = """() => {
  const box = (id) => document.getElementById(id).getBoundingClientRect();
  const [verdict, confidence, buttons] = [box('verdict'), box('confidence'), document.querySelector('.draw .buttons').getBoundingClientRect()];
  const apart = confidence.right <= buttons.left + 0.5 || confidence.left >= buttons.right - 0.5
    || confidence.bottom <= buttons.top + 0.5 || confidence.top >= buttons.bottom - 0.5;
  return { text: document.getElementById('confidence').textContent, inside: confidence.right <= verdict.right + 0.5, apart };
}"""


@pytest.mark.parametrize("name", list(SCREEN_SIZES))
def test_the_blank_verdict_is_not_cut_by_the_buttons(browser: Browser, server: str, name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height, touch=width < 1100)
    try:
        fits = visit.page.evaluate(VERDICT_FITS)
        assert fits["text"] and fits["inside"] and fits["apart"], fits
    finally:
        visit.context.close()


def test_an_empty_map_says_so_in_full_beside_a_phones_heatmap(browser: Browser, server: str,
                                                              golden: dict[int, Strokes]) -> None:
    visit = open_page(browser, server, 390, 844, touch=True)
    try:
        page, wire = visit.page, visit.wire
        draw_with_touch(visit, golden[3])
        frame = settle(visit)
        activations = decode_array(frame["activations"])
        silent = int(next(j for j in range(len(activations)) if activations[j] == 0))  # its CRP map is empty
        page.locator("#network-all").click()
        page.locator(f"#network-full .neuron.hidden[data-index='{silent}']").click()
        wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == silent)
        settle(visit)
        page.wait_for_selector("[data-part=empty-map]", timeout=WAIT_MS)
        legend = page.evaluate("() => { const l = document.querySelector('.explain .legend');"
                               " return [l.scrollHeight, l.clientHeight, l.textContent]; }")
        assert legend[0] <= legend[1] + 1, legend  # nothing scrolled out of sight inside the legend
    finally:
        visit.context.close()


# ---------- knock-out: the score gap shows what a probability stuck at 100 % hides ----------

def test_a_knock_out_shows_its_effect_on_the_score_gap(laptop: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = laptop.page, laptop.wire
    j = knock_out_the_strongest_neuron(laptop, golden[3])
    frame = wire.wait_received(lambda m: m["type"] == "frame" and j in m["knockout"] and m["knockout_effect"])
    settle(laptop)
    intact = np.asarray(frame["knockout_effect"]["probabilities"], dtype=np.float64)
    winner = int(frame["knockout_effect"]["prediction"])
    runner_up = max((c for c in range(len(intact)) if c != winner), key=lambda c: intact[c])
    before = math.log(intact[winner]) - math.log(intact[runner_up])
    now = frame["logits"][winner] - frame["logits"][runner_up]
    assert now < before  # the neuron that carried the most evidence for 3 is gone
    sentence = page.locator("#knockout-sentence").inner_text()
    minus = lambda v: f"{'−' if v < 0 else ''}{abs(v):.1f}"  # noqa: E731 (the page writes a true minus)
    expected = f"score (logit) of {winner} minus that of {runner_up}: {minus(before)} intact, {minus(now)} now"
    assert expected in sentence, sentence


# ---------- plain words on the stage, the researcher's term one tap away ----------

@pytest.mark.parametrize("name", ["phone-390x844", "laptop-1366x768"])
def test_the_heatmap_title_is_plain_words_and_its_term_one_tap_away(browser: Browser, server: str,
                                                                     golden: dict[int, Strokes], name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height, touch=width < 700)
    try:
        page, wire = visit.page, visit.wire
        assert page.locator("#term").is_hidden()  # a blank pad explains nothing yet
        draw(visit, golden[3])
        frame = settle(visit)
        words = page.locator("#heatmap-words").inner_text()
        assert words == "Why the network reads '3'" and not any(t in words for t in ("LRP", "CRP", "logit")), words
        term = page.locator("#term")
        assert term.inner_text() == "LRP" and term.is_visible()
        assert page.locator("#term-note").is_hidden()
        term.click()  # one tap: what the term means
        note = page.locator("#term-note")
        note.wait_for(state="visible", timeout=WAIT_MS)
        assert "Layer-wise Relevance Propagation" in note.inner_text()
        page.keyboard.press("Escape")
        note.wait_for(state="hidden", timeout=WAIT_MS)
        j = strongest_hidden(frame)
        click_neuron(page, "hidden", j)
        wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
        settle(visit)
        assert page.locator("#heatmap-words").inner_text() == f"What hidden neuron {j} adds to '3'"
        assert term.inner_text() == "CRP"
        term.click()
        assert "Concept Relevance Propagation" in note.inner_text()
    finally:
        visit.context.close()


# ---------- the tab order follows the panels' order on screen ----------

def test_tab_visits_the_panels_below_the_stage_in_their_order_on_screen(laptop: Visit) -> None:
    page = laptop.page
    page.wait_for_selector("#examples .example", timeout=WAIT_MS)
    shown = page.evaluate("() => [...document.querySelectorAll('#panels > section')]"
                          ".sort((a, b) => Number(a.style.order) - Number(b.style.order)).map((s) => s.id)")
    visited: list[str] = []
    page.focus("#upload")
    for _ in range(400):  # bounded: the page has fewer stops than this
        page.keyboard.press("Tab")
        panel = page.evaluate("() => document.activeElement.closest('#panels > section')?.id ?? null")
        if panel is None and visited:
            break
        if panel is not None and (not visited or visited[-1] != panel):
            visited.append(panel)
    assert visited == [panel for panel in shown if panel in visited] and len(visited) >= 3, (visited, shown)


# ---------- the comparison: a shared scale on request, each method's parameters stated ----------

def test_the_comparison_states_parameters_and_offers_one_scale(laptop: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = laptop.page, laptop.wire
    draw_with_mouse(laptop, golden[6])
    settle(laptop)
    page.click("#compare")
    comparison = wire.wait_received(lambda m: m["type"] == "comparison")
    page.wait_for_selector(f".compare-map >> nth={len(comparison['maps']) - 1}", timeout=WAIT_MS)
    welcome = wire.received[0]
    described = {method["name"]: method["description"] for method in welcome["methods"]}
    about = {m: page.locator(f".compare-map[data-method='{m}'] .compare-about").inner_text() for m in described
             if page.locator(f".compare-map[data-method='{m}']").count()}
    assert about and all(text == described[m] and text for m, text in about.items()), about
    if "occlusion" in about:
        assert "4×4 patch" in about["occlusion"]  # the parameter a researcher needs to read the map
    signed = [entry for entry in comparison["maps"] if entry["signed"] and entry["heatmap"] is not None]
    largest = max(float(np.abs(decode_array(entry["heatmap"])).max()) for entry in signed)

    def scales() -> dict[str, str]:
        return {entry["method"]: page.locator(f".compare-map[data-method='{entry['method']}'] .compare-scale").inner_text()
                for entry in signed}

    own = scales()
    assert len(set(own.values())) > 1, own  # each on its own scale by default
    page.check("#compare-shared")
    page.wait_for_function("() => new Set([...document.querySelectorAll('.compare-map .compare-scale')]"
                           ".filter((s) => s.textContent.startsWith('scale ±')).map((s) => s.textContent)).size === 1",
                           timeout=WAIT_MS)
    shared = set(scales().values())
    assert len(shared) == 1
    value = float(shared.pop().removeprefix("scale ±").replace("−", "-"))
    assert value == pytest.approx(largest, rel=0.01)


# ---------- the neuron card's reference digits over their own conditional heatmaps ----------

def test_the_card_shows_each_reference_digit_over_its_own_crp_map(laptop: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = laptop.page, laptop.wire
    draw_with_mouse(laptop, golden[3])
    j = strongest_hidden(settle(laptop))
    click_neuron(page, "hidden", j)
    wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
    page.wait_for_selector(".card-body:not([hidden]) .thumbs .thumb canvas", timeout=3 * WAIT_MS)
    # A thumbnail painted from its heatmap has colour (RdBu); the digit alone would be grey ink (r = g = b).
    coloured = page.evaluate("""() => [...document.querySelectorAll('.card-body .thumbs .thumb canvas')].map((canvas) => {
      const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
      let count = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - data[i + 2]) > 40) count += 1;
      return count;
    })""")
    assert len(coloured) == 16 and sum(1 for count in coloured if count > 0) >= 12, coloured
