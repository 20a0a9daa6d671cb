"""The page in a real browser: Debian chromium driven by Playwright, against a real server.

One server and one browser serve the module; each test opens its own page
(a fresh WebSocket, a fresh drawing).  What the page shows is read from the
DOM and its canvases; what it received is read off the wire (Playwright's
WebSocket frame events) and decoded as docs/protocol.md says.  Every wait is
on a signal (a WebSocket frame, a DOM state) with a deadline.

The median pointer event → heatmap painted time (User Timing measures named
``pointer-to-heatmap``, see static/timing.js) is printed by
``test_pointer_to_heatmap_latency``: run with ``-s`` to see it.
"""

import io
import math
import os
import re
import statistics
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, WebSocket, WebSocketRoute, sync_playwright
from starlette import status

from model_store import model_record
from model_store.examples import load_examples
from model_store.strokes import load_golden_digits
from support import decode_array, server_process

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 10_000
# `make screenshots` writes them to docs/screenshots for the README; a plain
# test run keeps the working tree clean and writes them to a temporary folder.
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "xai-screenshots")
# Name → viewport of the screenshots the README shows (issue #6).
SCREEN_SIZES = {
    "phone-390x844": (390, 844),
    "tablet-820x1180": (820, 1180),
    "laptop-1366x768": (1366, 768),
    "kiosk-1920x1080": (1920, 1080),
}
MIN_TEXT_PX = 14.0
MIN_TARGET_PX = 44.0

Strokes = list[list[tuple[float, float]]]


@dataclass
class Wire:
    """Every message the page sent and received over its WebSockets, parsed, in order."""

    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    sockets: list[WebSocket] = field(default_factory=list)

    def attach(self, socket: WebSocket) -> None:
        self.sockets.append(socket)
        socket.on("framereceived", lambda payload: self.received.append(orjson.loads(payload)))
        socket.on("framesent", lambda payload: self.sent.append(orjson.loads(payload)))

    def frames(self) -> list[dict[str, Any]]:
        return [message for message in self.received if message["type"] == "frame"]

    def wait_received(self, predicate: Callable[[dict[str, Any]], bool], after: int = 0) -> dict[str, Any]:
        """The first message from index ``after`` on that satisfies ``predicate``, waiting for it if needed.

        Playwright's sync API delivers events only inside its calls, so no
        message can slip in between the scan and the wait.
        """
        return self._wait(self.received, "framereceived", predicate, after)

    def wait_sent(self, predicate: Callable[[dict[str, Any]], bool], after: int = 0) -> dict[str, Any]:
        """The first message the page sent from index ``after`` on that satisfies ``predicate``."""
        return self._wait(self.sent, "framesent", predicate, after)

    def _wait(self, messages: list[dict[str, Any]], event: str,
              predicate: Callable[[dict[str, Any]], bool], after: int) -> dict[str, Any]:
        for message in messages[after:]:
            if predicate(message):
                return message
        payload = self.sockets[-1].wait_for_event(
            event, predicate=lambda data: predicate(orjson.loads(data)), timeout=WAIT_MS)
        return orjson.loads(payload)

    def frame_for(self, seq: int, after: int = 0) -> dict[str, Any]:
        """The first frame that reflects client message ``seq``."""
        return self.wait_received(lambda m: m["type"] == "frame" and m["seq"] is not None and m["seq"] >= seq, after)


@dataclass
class Visit:
    """One open page and what went over its WebSocket."""

    context: BrowserContext
    page: Page
    wire: Wire
    errors: list[str]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with server_process() as running:
        yield running.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def golden() -> dict[int, Strokes]:
    return load_golden_digits()


def open_live(browser: Browser, url: str, width: int = 1366, height: int = 768, touch: bool = False,
              motion: Literal["reduce", "no-preference"] = "reduce") -> Visit:
    """A new page at ``url`` (its WebSocket traffic and errors recorded), returned once its socket is open.

    ``motion``: the visitor's ``prefers-reduced-motion``. Tests ask for "reduce" unless they test motion:
    then the page draws no example by itself on arrival (static/arrival.js) and starts on a blank pad.
    """
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=touch,
                                  is_mobile=touch, device_scale_factor=1, reduced_motion=motion)
    page = context.new_page()
    wire = Wire()
    errors: list[str] = []
    page.on("websocket", wire.attach)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("#status[data-status=open]", timeout=WAIT_MS)
    return Visit(context, page, wire, errors)


def open_page(browser: Browser, url: str, width: int = 1366, height: int = 768, touch: bool = False,
              motion: Literal["reduce", "no-preference"] = "reduce") -> Visit:
    """A new page at ``url``, returned once it is live and shows the first frame (``motion``: as open_live's)."""
    visit = open_live(browser, url, width, height, touch, motion)
    visit.wire.wait_received(lambda m: m["type"] == "frame")
    visit.page.wait_for_selector(".neuron.hidden", timeout=WAIT_MS)
    return visit


@pytest.fixture
def visit(browser: Browser, server: str) -> Iterator[Visit]:
    opened = open_page(browser, server)
    yield opened
    opened.context.close()
    assert not [e for e in opened.errors if "favicon" not in e], opened.errors


def pad_box(page: Page) -> dict[str, float]:
    box = page.locator("#pad").bounding_box()
    assert box is not None
    return box


def to_screen(box: dict[str, float], point: tuple[float, float]) -> tuple[float, float]:
    return box["x"] + point[0] * box["width"], box["y"] + point[1] * box["height"]


def next_stroke_seq(wire: Wire, sent_before: int) -> int:
    """The seq of the first stroke message sent after index ``sent_before``."""
    return wire.wait_sent(lambda m: m["type"] == "stroke", after=sent_before)["seq"]


def draw_with_mouse(visit: Visit, strokes: Strokes) -> None:
    """Draw ``strokes`` with the mouse; each stroke waits, button still down, for a frame reflecting it.

    Raises playwright's TimeoutError if a stroke gets no frame before pointerup.
    """
    page, wire = visit.page, visit.wire
    box = pad_box(page)
    for stroke in strokes:
        sent_before = len(wire.sent)
        received_before = len(wire.received)
        page.mouse.move(*to_screen(box, stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*to_screen(box, point), steps=3)
        # The button is still down: a frame reflecting this stroke must come now, not at pointerup.
        wire.frame_for(next_stroke_seq(wire, sent_before), after=received_before)
        page.mouse.up()


def touch_points(box: dict[str, float], point: tuple[float, float]) -> list[dict[str, float]]:
    x, y = to_screen(box, point)
    return [{"x": x, "y": y, "radiusX": 4, "radiusY": 4, "force": 0.5, "id": 0}]


def draw_with_touch(visit: Visit, strokes: Strokes) -> None:
    """Draw ``strokes`` with CDP touch events (one finger); like draw_with_mouse, each stroke waits
    for a frame reflecting it before the finger lifts."""
    page, wire = visit.page, visit.wire
    cdp = visit.context.new_cdp_session(page)
    box = pad_box(page)
    for stroke in strokes:
        sent_before = len(wire.sent)
        received_before = len(wire.received)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": touch_points(box, stroke[0])})
        for start, end in zip(stroke, stroke[1:]):
            for t in (1 / 3, 2 / 3, 1.0):
                point = (start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": touch_points(box, point)})
        wire.frame_for(next_stroke_seq(wire, sent_before), after=received_before)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


SETTLE_TRIES = 20  # checks, two animation frames apart: what a test drew is sent within a few


def settle(visit: Visit) -> dict[str, Any]:
    """The frame answering everything the page sent, once the page shows it.

    The status line carries the last seq the page sent and the seq of the
    frame on screen (static/status.js); frame ≥ sent means nothing is pending.
    It must still hold two animation frames later: the pad sends its points
    once per animation frame, and a frame answering points sent after this
    returned would change what is on screen (a phone's strip of neurons
    reorders by relevance) under the test's next click.
    """
    caught_up = ("() => { const d = document.getElementById('status').dataset;"
                 " return Number(d.frameSeq) >= Number(d.sentSeq) ? {sent: Number(d.sentSeq)} : null; }")
    for _ in range(SETTLE_TRIES):
        shown = visit.page.wait_for_function(caught_up, timeout=WAIT_MS).json_value()
        visit.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
        if visit.page.evaluate(caught_up) == shown:
            return visit.wire.frame_for(shown["sent"])
    raise AssertionError(f"the page kept sending for {SETTLE_TRIES} checks: it never settled")


def heatmap_title(page: Page) -> str:
    """The heatmap's title in plain words (the method's term is the chip beside it, #term)."""
    return page.locator("#heatmap-words").inner_text()


def expected_colours(page: Page, heatmap: np.ndarray, scale: float | None = None) -> np.ndarray:
    """The page's own colour map (static/colormap.js) applied to R / scale, as (784, 3) bytes.

    ``scale``: max|R| painted darkest; default the map's own (a CRP map is painted on its class's).
    """
    scale = scale or float(np.abs(heatmap).max()) or 1.0
    values = (heatmap.reshape(-1) / scale).astype(float).tolist()
    colours = page.evaluate(
        "async (values) => { const { diverging } = await import('/static/colormap.js');"
        " return values.map((v) => diverging(v)); }", values)
    return np.asarray(colours, dtype=np.int16)


def shown_heatmap(page: Page) -> np.ndarray:
    """The heatmap canvas's 28×28 pixels as (784, 3) bytes."""
    rgba = page.evaluate(
        "() => Array.from(document.getElementById('heatmap').getContext('2d').getImageData(0, 0, 28, 28).data)")
    return np.asarray(rgba, dtype=np.int16).reshape(-1, 4)[:, :3]


def click_neuron(page: Page, kind: str, index: int) -> None:
    page.locator(f".neuron.{kind}[data-index='{index}']").click()


def strongest_hidden(frame: dict[str, Any]) -> int:
    """The hidden neuron passing the most relevance to the frame's target class."""
    return int(np.argmax(decode_array(frame["edges"])))  # R(j → target), docs/protocol.md


def test_mouse_drawing_streams_frames_during_the_stroke(visit: Visit, golden: dict[int, Strokes]) -> None:
    first_stroke = max(golden[4], key=len)
    page, wire = visit.page, visit.wire
    box = pad_box(page)
    page.mouse.move(*to_screen(box, first_stroke[0]))
    page.mouse.down()
    half = len(first_stroke) // 2
    for point in first_stroke[1:half]:
        page.mouse.move(*to_screen(box, point), steps=3)
    stroke_seq = next_stroke_seq(wire, 0)
    frame = wire.frame_for(stroke_seq)
    # Mid-stroke, button still down: frames arrived and the page shows a reading.
    page.wait_for_function("() => /^[0-9]$/.test(document.getElementById('predicted').textContent)", timeout=WAIT_MS)
    frames_mid_stroke, received_mid_stroke = len(wire.frames()), len(wire.received)
    newest_seq = max(m["seq"] or 0 for m in wire.frames())
    for point in first_stroke[half:]:
        page.mouse.move(*to_screen(box, point), steps=3)
    # Points of the second half go out in a message no frame has answered yet; its frame comes, button down.
    second_half = wire.wait_sent(lambda m: m["type"] == "stroke" and m["seq"] > newest_seq)
    later = wire.frame_for(second_half["seq"], after=received_mid_stroke)
    assert len(wire.frames()) > frames_mid_stroke, "no new frame while the stroke went on"
    assert later["seq"] > frame["seq"]
    page.mouse.up()

    draw_with_mouse(visit, [stroke for stroke in golden[4] if stroke is not first_stroke])
    final = settle(visit)
    assert final["prediction"] == 4
    assert page.locator("#predicted").inner_text() == "4"
    assert heatmap_title(page) == "Why the network reads '4'"
    sent_points = sum(len(m["points"]) for m in wire.sent if m["type"] == "stroke")
    assert sent_points >= sum(len(stroke) for stroke in golden[4])


def test_touch_drawing_streams_frames_during_the_stroke(browser: Browser, server: str,
                                                        golden: dict[int, Strokes]) -> None:
    visit = open_page(browser, server, 390, 844, touch=True)
    try:
        draw_with_touch(visit, golden[7])
        touch_strokes = [m for m in visit.wire.sent if m["type"] == "stroke"]
        assert len({m["id"] for m in touch_strokes}) == len(golden[7])
        final = settle(visit)
        assert final["prediction"] == 7
        assert visit.page.locator("#predicted").inner_text() == "7"
        # The page did not scroll or zoom while the finger moved (touch-action: none).
        assert visit.page.evaluate("() => [window.scrollY, visualViewport.scale]") == [0, 1]
    finally:
        visit.context.close()


def test_hidden_neuron_shows_its_crp_map(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[3])
    lrp = settle(visit)
    assert lrp["mode"] == "lrp" and lrp["prediction"] == 3
    j = strongest_hidden(lrp)

    click_neuron(visit.page, "hidden", j)
    crp = visit.wire.wait_received(lambda m: m["type"] == "frame" and m["mode"] == "crp" and m["hidden"] == j)
    settle(visit)
    assert heatmap_title(visit.page) == f"What hidden neuron {j} adds to '3'"
    assert crp["output"] == 3 and crp["target"] == 3
    crp_map, lrp_map = decode_array(crp["heatmap"]), decode_array(lrp["heatmap"])
    assert np.abs(crp_map).max() > 0
    assert not np.allclose(crp_map / np.abs(crp_map).max(), lrp_map / np.abs(lrp_map).max(), atol=0.05)
    shown = shown_heatmap(visit.page)
    # On the scale of the class's LRP map (issue 11): max(class map, this map).
    expected = expected_colours(visit.page, crp_map, max(crp["class_max_abs"], float(np.abs(crp_map).max())))
    assert np.abs(shown - expected).max() <= 2, "the canvas does not show the frame's heatmap"
    assert visit.page.locator(f".neuron.hidden[data-index='{j}']").get_attribute("aria-pressed") == "true"
    visit.page.wait_for_selector(".card-body:not([hidden]) .thumbs .thumb", timeout=WAIT_MS)
    assert visit.page.locator(".card-title").inner_text() == f"Hidden neuron {j}"
    assert visit.page.locator("#card .thumbs").first.locator(".thumb").count() == 8


def test_output_neuron_gives_lrp_for_that_class(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[9])
    assert settle(visit)["prediction"] == 9
    click_neuron(visit.page, "output", 4)
    frame = visit.wire.wait_received(lambda m: m["type"] == "frame" and m["output"] == 4)
    settle(visit)
    assert frame["mode"] == "lrp" and frame["target"] == 4 and frame["hidden"] is None
    assert heatmap_title(visit.page) == "What speaks for and against '4'"
    expected = expected_colours(visit.page, decode_array(frame["heatmap"]))
    assert np.abs(shown_heatmap(visit.page) - expected).max() <= 2
    assert visit.page.locator(".neuron.output[data-index='4']").get_attribute("aria-pressed") == "true"


def focused_neuron(page: Page) -> dict[str, Any]:
    return page.evaluate(
        "() => { const g = document.activeElement; const c = g.querySelector('circle');"
        " return {kind: g.dataset.kind, index: Number(g.dataset.index),"
        " x: Number(c.getAttribute('cx')), y: Number(c.getAttribute('cy'))}; }")


def test_keyboard_moves_the_selection(visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    draw_with_mouse(visit, golden[2])
    assert settle(visit)["prediction"] == 2
    page.focus("#upload")  # the last of the pad's controls (Undo, Clear, Replay, Photo)
    page.keyboard.press("Tab")
    start = focused_neuron(page)
    assert start["kind"] == "hidden", "Tab after the pad's buttons does not enter the diagram"

    page.keyboard.press("ArrowRight")
    right = focused_neuron(page)
    assert (right["kind"], right["index"]) == ("hidden", start["index"] + 1)
    frame = wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == right["index"])
    assert frame["mode"] == "crp" and frame["output"] == 2

    page.keyboard.press("ArrowDown")
    down = focused_neuron(page)
    assert down["kind"] == "hidden" and down["x"] == right["x"] and down["y"] > right["y"]
    wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == down["index"])

    page.keyboard.press("a")
    alone = wire.wait_received(lambda m: m["type"] == "frame" and m["mode"] == "hidden")
    assert alone["hidden"] == down["index"] and alone["output"] is None
    settle(visit)
    assert heatmap_title(page) == f"Hidden neuron {down['index']} alone: what it responds to"

    page.keyboard.press("Escape")
    back = wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] is None and m["output"] is None,
                              after=wire.received.index(alone) + 1)
    assert back["mode"] == "lrp"
    settle(visit)
    assert heatmap_title(page) == "Why the network reads '2'"


def test_switching_to_h16_redraws_the_diagram(visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    default_hidden = wire.received[0]["model"]["hidden"]
    assert default_hidden != 16 and page.locator(".neuron.hidden").count() == default_hidden
    draw_with_mouse(visit, golden[0])
    settle(visit)
    page.select_option("#model", "h16")
    welcome = wire.wait_received(lambda m: m["type"] == "welcome" and m["model"]["name"] == "h16")
    frame = wire.wait_received(lambda m: m["type"] == "frame" and m["model"] == "h16")
    assert welcome["model"]["hidden"] == 16 and frame["activations"]["shape"] == [16]
    page.wait_for_function("() => document.querySelectorAll('.neuron.hidden').length === 16", timeout=WAIT_MS)
    assert page.locator(".neuron.output").count() == 10
    settle(visit)
    assert page.locator("#predicted").inner_text() == str(frame["prediction"])
    click_neuron(page, "hidden", 15)
    wire.wait_received(lambda m: m["type"] == "frame" and m["model"] == "h16" and m["hidden"] == 15)


def ink_pixels(page: Page) -> int:
    """Pixels of the drawing pad with ink on them."""
    return page.evaluate(
        "() => { const c = document.getElementById('pad'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
        " for (let i = 3; i < d.length; i += 4) if (d[i] > 128) n += 1; return n; }")


def test_page_reconnects_after_a_server_restart_with_the_drawing_intact(
        browser: Browser, golden: dict[int, Strokes]) -> None:
    with server_process() as first:
        visit = open_page(browser, first.url)
        page, wire = visit.page, visit.wire
        draw_with_mouse(visit, golden[5])
        frame = settle(visit)
        assert frame["prediction"] == 5
        j = strongest_hidden(frame)
        click_neuron(page, "hidden", j)
        wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
        ink_before = ink_pixels(page)
        assert ink_before > 0
    # The server got SIGTERM: the page was told 1012 and waits to reconnect.
    page.wait_for_selector("#status[data-status=reconnecting]", timeout=WAIT_MS)
    assert "Reconnecting" in page.locator("#status").inner_text()
    port = first.url.rsplit(":", 1)[1]
    sockets_before, received_before = len(wire.sockets), len(wire.received)
    try:
        with server_process(env={"PORT": port}):
            page.wait_for_selector("#status[data-status=open]", timeout=3 * WAIT_MS)
            assert len(wire.sockets) > sockets_before
            replayed = wire.wait_received(
                lambda m: m["type"] == "frame" and m["hidden"] == j and m["prediction"] == 5,
                after=received_before)
            assert replayed["mode"] == "crp"
            settle(visit)
            assert page.locator("#predicted").inner_text() == "5"
            assert heatmap_title(page) == f"What hidden neuron {j} adds to '5'"
            assert ink_pixels(page) == ink_before
    finally:
        visit.context.close()


def test_pointer_to_heatmap_latency(visit: Visit, golden: dict[int, Strokes]) -> None:
    for digit in (1, 5, 8):
        draw_with_mouse(visit, golden[digit])
        settle(visit)
        visit.page.click("#clear")
    durations = visit.page.evaluate(
        "() => performance.getEntriesByName('pointer-to-heatmap').map((entry) => entry.duration)")
    assert len(durations) >= 20 and min(durations) > 0
    print(f"\npointer event → heatmap painted: median {statistics.median(durations):.1f} ms, "
          f"p90 {np.percentile(durations, 90):.1f} ms over {len(durations)} input batches (headless chromium)")


def small_texts(page: Page) -> list[str]:
    """Visible text nodes whose computed font size is below MIN_TEXT_PX (HTML and SVG)."""
    return page.evaluate(
        """(minimum) => {
          const small = [];
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const element = node.parentElement;
            if (!node.textContent.trim() || !element.getClientRects().length) continue;
            if (element.closest('[hidden]') || getComputedStyle(element).visibility === 'hidden') continue;
            let size = parseFloat(getComputedStyle(element).fontSize);
            const svg = element.closest('svg');
            if (svg) size *= svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
            if (size < minimum - 0.01) small.push(`${node.textContent.trim()} (${size.toFixed(1)} px)`);
          }
          return small;
        }""", MIN_TEXT_PX)


def small_targets(page: Page) -> list[str]:
    """Neurons whose tap target is under MIN_TARGET_PX in either direction."""
    return page.evaluate(
        """(minimum) => [...document.querySelectorAll('.neuron .hit')]
          .map((rect) => [rect.parentElement.getAttribute('aria-label'), rect.getBoundingClientRect()])
          .filter(([, box]) => box.width < minimum - 0.01 || box.height < minimum - 0.01)
          .map(([label, box]) => `${label}: ${box.width.toFixed(1)}×${box.height.toFixed(1)}`)""", MIN_TARGET_PX)


@pytest.mark.parametrize("name", list(SCREEN_SIZES))
def test_screenshots_have_no_overflow_small_text_or_small_targets(
        browser: Browser, server: str, golden: dict[int, Strokes], name: str) -> None:
    width, height = SCREEN_SIZES[name]
    visit = open_page(browser, server, width, height)
    try:
        page = visit.page
        draw_with_mouse(visit, golden[4])
        frame = settle(visit)
        j = strongest_hidden(frame)
        click_neuron(page, "hidden", j)
        visit.wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
        page.wait_for_selector(".card-body:not([hidden]) .thumbs .thumb", timeout=WAIT_MS)
        settle(visit)
        page.evaluate("() => window.scrollTo(0, 0)")
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, "horizontal overflow"
        assert small_texts(page) == []
        assert small_targets(page) == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    finally:
        visit.context.close()


def test_comparison_shows_every_method_labelled_with_its_cost(visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    draw_with_mouse(visit, golden[6])
    settle(visit)
    page.click("#compare")
    request = wire.wait_sent(lambda m: m["type"] == "compare")
    welcome = wire.received[0]
    methods = [method["name"] for method in welcome["methods"]][:welcome["limits"]["max_compare_methods"]]
    assert request["methods"] == methods
    comparison = wire.wait_received(lambda m: m["type"] == "comparison")
    page.wait_for_selector(f".compare-map >> nth={len(comparison['maps']) - 1}", timeout=WAIT_MS)
    shown = page.locator(".compare-map")
    assert shown.count() == len(comparison["maps"]) == len(methods)
    for index, entry in enumerate(comparison["maps"]):
        caption = shown.nth(index).locator("figcaption").inner_text()
        assert entry["label"] in caption
        assert ("live, every frame" if entry["cost"] == "per-frame" else "runs when you pause") in caption
    page.screenshot(path=str(SCREENSHOTS / "comparison-1366x768.png"), full_page=True)


def diagram_reading(page: Page) -> dict[str, Any]:
    """What the diagram and the legend claim: the predicted frame, the percentages, the legend's ends."""
    return page.evaluate(
        "() => ({ predictedShown: document.querySelector('.predicted-frame').getAttribute('visibility') === 'visible',"
        " percentages: [...document.querySelectorAll('.probability')].map((t) => t.textContent),"
        " visibleLines: document.querySelectorAll('#network line[visibility=visible]').length,"
        " legend: document.querySelector('#legend').innerText.replace(/\\s+/g, ' ').trim() })")


def test_a_blank_pad_claims_no_reading(visit: Visit, golden: dict[int, Strokes]) -> None:
    page = visit.page
    blank = diagram_reading(page)
    assert not blank["predictedShown"] and set(blank["percentages"]) == {""} and blank["visibleLines"] == 0
    assert blank["legend"] == "0", "a blank pad has no scale and no class to be for or against"
    click_neuron(page, "hidden", 0)  # under no class: a blank pad's "prediction" is none
    visit.wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == 0)
    settle(visit)
    assert page.locator(".neuron.output[aria-pressed=true]").count() == 0
    page.click("#reset")
    draw_with_mouse(visit, golden[3])
    settle(visit)
    drawn = diagram_reading(page)
    assert drawn["predictedShown"] and "%" in drawn["percentages"][3] and drawn["visibleLines"] > 0
    assert "for '3'" in drawn["legend"]
    page.click("#clear")
    settle(visit)
    page.wait_for_function("() => document.querySelector('.predicted-frame').getAttribute('visibility') === 'hidden'",
                           timeout=WAIT_MS)
    assert diagram_reading(page) == blank


def test_undo_or_clear_while_the_pen_is_down_ends_the_stroke(visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    box = pad_box(page)
    for key in ("Control+z", "clear"):
        stroke = max(golden[4], key=len)
        page.mouse.move(*to_screen(box, stroke[0]))
        page.mouse.down()
        for point in stroke[1:len(stroke) // 2]:
            page.mouse.move(*to_screen(box, point), steps=2)
        if key == "clear":
            page.evaluate("() => document.getElementById('clear').click()")  # a second finger on Clear
        else:
            page.keyboard.press(key)
        for point in stroke[len(stroke) // 2:]:  # the pen goes on moving: it draws nothing now
            page.mouse.move(*to_screen(box, point), steps=2)
        page.mouse.up()
        frame = settle(visit)
        assert ink_pixels(page) == 0 and decode_array(frame["input"]).max() == 0, key
    assert not [m for m in wire.received if m["type"] == "error"], "the page sent strokes the server refused"
    draw_with_mouse(visit, golden[7])
    assert settle(visit)["prediction"] == 7
    assert page.locator("#status").get_attribute("data-status") == "open"


def test_right_click_does_not_draw_and_a_full_drawing_notice_clears(visit: Visit) -> None:
    page, wire = visit.page, visit.wire
    box = pad_box(page)
    page.mouse.click(*to_screen(box, (0.5, 0.5)), button="right")
    assert not [m for m in wire.sent if m["type"] == "stroke"]
    assert page.locator("#pad-hint").is_visible()
    max_strokes = wire.received[0]["limits"]["max_strokes"]
    for k in range(max_strokes + 1):  # one dot more than the drawing may hold
        page.mouse.click(*to_screen(box, (0.1 + 0.8 * (k % 8) / 7, 0.1 + 0.8 * (k // 8) / 8)))
    page.wait_for_selector("#notice:not([hidden])", timeout=WAIT_MS)
    assert "full" in page.locator("#notice").inner_text()
    page.click("#clear")
    page.wait_for_selector("#notice", state="hidden", timeout=WAIT_MS)


def test_unsigned_maps_are_read_as_sensitivity_not_evidence(visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    assert {m["name"]: m["signed"] for m in wire.received[0]["methods"]}["saliency"] is False
    draw_with_mouse(visit, golden[4])
    page.select_option("#method", "saliency")
    frame = wire.wait_received(lambda m: m["type"] == "frame" and m["method"] == "saliency")
    settle(visit)
    assert decode_array(frame["heatmap"]).min() >= 0, "saliency is |∂y/∂x|"
    assert heatmap_title(page) == "Where the score for '4' is most sensitive"
    assert page.locator("#term").inner_text() == "Saliency"  # the method's name, one tap away
    assert "more sensitive" in page.locator("#legend").inner_text() and "against" not in page.locator("#legend").inner_text()
    assert "does not say whether" in page.locator("#summary").inner_text()


def test_a_hidden_neuron_tapped_under_the_prediction_follows_it(visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    draw_with_mouse(visit, golden[3])
    j = strongest_hidden(settle(visit))
    click_neuron(page, "hidden", j)
    wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
    settle(visit)
    assert heatmap_title(page) == f"What hidden neuron {j} adds to '3'"
    page.click("#clear")
    draw_with_mouse(visit, golden[1])
    wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j and m["target"] == 1 and m["prediction"] == 1)
    settle(visit)
    assert heatmap_title(page) == f"What hidden neuron {j} adds to '1'"
    page.check("#alone")
    wire.wait_received(lambda m: m["type"] == "frame" and m["mode"] == "hidden")
    settle(visit)
    assert page.locator(".neuron.output[aria-pressed=true]").count() == 0, "neuron alone explains no class"


def test_any_action_reconnects_after_the_idle_close(browser: Browser, golden: dict[int, Strokes]) -> None:
    with server_process(env={"IDLE_TIMEOUT_S": "2"}) as running:
        visit = open_page(browser, running.url)
        try:
            page, wire = visit.page, visit.wire
            draw_with_mouse(visit, golden[5])
            settle(visit)
            page.wait_for_selector("#status[data-status=idle]", timeout=WAIT_MS)
            received_before = len(wire.received)
            click_neuron(page, "output", 6)  # a tap on the diagram, not on the pad
            page.wait_for_selector("#status[data-status=open]", timeout=WAIT_MS)
            frame = wire.wait_received(lambda m: m["type"] == "frame" and m["output"] == 6, after=received_before)
            assert frame["prediction"] == 5, "the replay restored the drawing"
            settle(visit)
            assert heatmap_title(page) == "What speaks for and against '6'"
        finally:
            visit.context.close()


def test_frame_rate_falls_to_zero_when_the_pen_rests(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[2])
    settle(visit)
    visit.page.wait_for_function("() => document.getElementById('status').textContent.endsWith(' 0 fps')",
                                 timeout=WAIT_MS)


@dataclass
class HeldMessages:
    """A WebSocket route that holds the server's messages of type ``kind`` back while ``holding``.

    Everything else passes at once; :meth:`release` sends what was held, in order.
    """

    kind: str
    holding: bool = True
    held: list[str | bytes] = field(default_factory=list)
    routes: list[WebSocketRoute] = field(default_factory=list)

    def route(self, page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        self.routes.append(page_side)
        page_side.on_message(server_side.send)
        server_side.on_message(lambda message: self.forward(page_side, message))

    def forward(self, page_side: WebSocketRoute, message: str | bytes) -> None:
        if self.holding and f'"type":"{self.kind}"' in str(message):
            self.held.append(message)
        else:
            page_side.send(message)

    def release(self) -> None:
        self.holding = False
        for message in self.held:
            self.routes[-1].send(message)
        self.held.clear()

    def wait_held(self, page: Page) -> None:
        deadline_ms = WAIT_MS
        while not self.held and deadline_ms > 0:
            page.wait_for_timeout(20)  # Playwright delivers the route's messages inside its calls
            deadline_ms -= 20
        assert self.held, f"no {self.kind} came from the server"


CAUGHT_UP = ("() => { const d = document.getElementById('status').dataset;"
             " return Number(d.frameSeq) >= Number(d.sentSeq) && Number(d.sentSeq) > 0; }")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A laptop-sized browser context of its own, for a page whose WebSocket a test routes."""
    opened = browser.new_context(viewport={"width": 1366, "height": 768}, device_scale_factor=1, reduced_motion="reduce")
    yield opened
    opened.close()


def open_routed(context: BrowserContext, url: str, route: Callable[[WebSocketRoute], None]) -> Page:
    """A page at ``url`` whose WebSocket runs through ``route``, returned once it is live."""
    page = context.new_page()
    page.route_web_socket("**/ws", route)
    page.goto(url)
    page.wait_for_selector("#status[data-status=open]", timeout=WAIT_MS)
    return page


@pytest.fixture
def holding(context: BrowserContext, server: str, golden: dict[int, Strokes]) -> tuple[Page, HeldMessages]:
    """A page through :class:`HeldMessages` holding comparisons, with a 6 drawn and answered."""
    holding = HeldMessages("comparison")
    page = open_routed(context, server, holding.route)
    box = pad_box(page)
    for stroke in golden[6]:
        page.mouse.move(*to_screen(box, stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*to_screen(box, point), steps=2)
        page.mouse.up()
    page.wait_for_function(CAUGHT_UP, timeout=WAIT_MS)
    return page, holding


def test_a_comparison_that_arrives_after_the_pen_moved_on_is_marked_stale(holding: tuple[Page, HeldMessages]) -> None:
    page, held = holding
    box = pad_box(page)
    page.click("#compare")
    # a dot drawn while the comparison is on its way (the click on Compare may have scrolled the page)
    page.locator("#pad").click(position={"x": 0.9 * box["width"], "y": 0.9 * box["height"]})
    page.wait_for_function(CAUGHT_UP, timeout=WAIT_MS)
    held.wait_held(page)
    held.routes[-1].send(held.held[0])
    page.wait_for_selector("#compare-grid .compare-map", timeout=WAIT_MS)
    assert "The drawing has changed since" in page.locator("#compare-note").inner_text()


def test_a_comparison_lost_with_its_connection_is_no_longer_awaited(holding: tuple[Page, HeldMessages]) -> None:
    page, held = holding
    page.click("#compare")
    held.wait_held(page)
    assert "Computing" in page.locator("#compare-note").inner_text()
    held.routes[-1].close(code=1012, reason="restart")  # as a server restart would
    page.wait_for_function("() => document.getElementById('status').dataset.status !== 'open'", timeout=WAIT_MS)
    page.wait_for_selector("#status[data-status=open]", timeout=WAIT_MS)  # reconnected through the route
    assert "Computing" not in page.locator("#compare-note").inner_text()


@pytest.mark.parametrize("reason, words", [("server not ready", "server starting"),
                                           ("server at capacity", "server busy")])
def test_a_refused_connection_says_why_while_the_page_retries(
        context: BrowserContext, server: str, reason: str, words: str) -> None:
    # 1013 has two documented reasons (docs/protocol.md, "Connecting"): a replica still starting is not a full one.
    refusals = 3  # backoffs of 125-250, 250-500 and 500-1000 ms: over a second of "Reconnecting…"

    def route(page_side: WebSocketRoute) -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            page_side.close(code=status.WS_1013_TRY_AGAIN_LATER, reason=reason)
            return
        server_side = page_side.connect_to_server()
        page_side.on_message(server_side.send)
        server_side.on_message(page_side.send)

    page = context.new_page()
    page.route_web_socket("**/ws", route)
    page.goto(server)
    page.wait_for_function(f"() => document.getElementById('status').textContent.includes('({words})')",
                           timeout=WAIT_MS)
    page.wait_for_selector("#status[data-status=open]", timeout=WAIT_MS)
    assert refusals == 0


def test_ink_drawn_before_the_first_welcome_is_sent_with_it_and_the_page_takes_its_sizes_from_it(
        context: BrowserContext, server: str, golden: dict[int, Strokes]) -> None:
    # The page writes no drawing limit, image size or class count of its own: until the welcome
    # brings them it keeps the ink, sends nothing, and sends the ink in the replay after the welcome.
    held = HeldMessages("welcome")
    sent: list[dict[str, Any]] = []

    def route(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        held.routes.append(page_side)

        def to_server(message: str | bytes) -> None:
            sent.append(orjson.loads(message))
            server_side.send(message)

        page_side.on_message(to_server)
        server_side.on_message(lambda message: held.forward(page_side, message))

    page = context.new_page()
    page.route_web_socket("**/ws", route)
    page.goto(server)
    held.wait_held(page)
    box = pad_box(page)
    for stroke in golden[7]:
        page.mouse.move(*to_screen(box, stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*to_screen(box, point), steps=2)
        page.mouse.up()
    assert not [m for m in sent if m["type"] == "stroke"] and page.locator("#status").get_attribute("data-status") != "open"
    welcome = orjson.loads(held.held[0])
    held.release()
    page.wait_for_function(CAUGHT_UP, timeout=WAIT_MS)
    strokes = [m for m in sent if m["type"] == "stroke"]
    assert len({m["id"] for m in strokes}) == len(golden[7])
    assert sum(len(m["points"]) for m in strokes) >= sum(len(stroke) for stroke in golden[7])
    assert page.locator("#predicted").inner_text() == "7"
    inputs, classes = welcome["model"]["layers"][0], welcome["model"]["layers"][-1]
    side = math.isqrt(inputs)
    assert page.locator("#bars li").count() == classes
    assert page.locator("#input-caption").inner_text() == f"What the model sees: {side} × {side} pixels"
    assert page.locator("#network .output-layer .neuron").count() == classes
    assert f"{inputs} inputs" in (page.locator("#network svg").get_attribute("aria-label") or "")


SCRIPTED_SOCKET = """
    const { createSocket } = await import('/static/socket.js');
    const sockets = [];
    class ScriptedSocket extends EventTarget {
      static OPEN = 1;
      constructor() { super(); this.readyState = 1; this.sent = []; sockets.push(this); }
      send(data) { this.sent.push(JSON.parse(data)); }
      emit(message) { this.dispatchEvent(new MessageEvent('message', { data: JSON.stringify(message) })); }
      drop(code) { this.dispatchEvent(new CloseEvent('close', { code })); }
    }
    window.WebSocket = ScriptedSocket;
    const shown = [];
    const socket = createSocket({ url: 'ws://scripted/ws', onMessage: (m) => shown.push(`${m.type}:${m.seq}`),
                                  onConnection: () => {}, onSent: () => {},
                                  replay: () => [{ type: 'stroke', id: 1, points: [[0.5, 0.5]] }] });
    const server = sockets[0];
    server.emit({ type: 'welcome', seq: null });
    const replayed = server.sent[0].seq;
"""


def scripted(visit: Visit, script: str) -> Any:
    """Run ``script`` after :data:`SCRIPTED_SOCKET`: socket.js in the browser, against a scripted
    WebSocket (``server``) that has sent its welcome and received the one replayed stroke."""
    return visit.page.evaluate(f"async () => {{ {SCRIPTED_SOCKET} {script} }}")


def test_frames_from_before_the_replay_are_not_shown(visit: Visit) -> None:
    # After a reconnect the server's first frame shows its fresh, blank state; only frames that
    # reflect the replayed drawing may reach the page.
    result = scripted(visit, """
        server.emit({ type: 'frame', seq: null });
        server.emit({ type: 'frame', seq: replayed });
        return { shown, replayed };""")
    assert result["shown"] == ["welcome:null", f"frame:{result['replayed']}"]


def test_frames_are_shown_again_when_the_replay_was_refused(visit: Visit) -> None:
    # The server refused the replayed stroke: its frames never reach that seq, and must not be dropped.
    result = scripted(visit, """
        server.emit({ type: 'error', seq: replayed, code: 'bad_stroke_id' });
        server.emit({ type: 'frame', seq: null });
        return { shown, replayed };""")
    assert result["shown"] == ["welcome:null", f"error:{result['replayed']}", "frame:null"]


def test_an_action_during_a_reconnect_backoff_keeps_the_backoff(visit: Visit) -> None:
    # 1013: the server is full; a tap must not skip the jittered wait and reconnect at once.
    opened = scripted(visit, """
        server.drop(1013);
        socket.wake();
        return sockets.length;""")
    assert opened == 1


def test_after_a_reconnect_the_page_keeps_describing_the_visitors_model(visit: Visit) -> None:
    # state.js in the browser: a reconnect's first welcome describes the server's default model; the
    # page keeps the diagram of the visitor's model until the replayed configure's welcome arrives.
    names = visit.page.evaluate("""async () => {
        const { createStore } = await import('/static/state.js');
        const store = createStore();
        const models = [{ name: 'default', hidden: 128 }, { name: 'h16', hidden: 16 }];
        const methods = [{ name: 'lrp' }], rules = [{ name: 'epsilon' }];
        const welcome = (name, served = methods) => ({
            type: 'welcome', model: { name }, models, methods: served, rules, limits: {},
            state: { model: name, method: 'lrp', rule: 'epsilon', output: null, hidden: null } });
        const seen = [];
        store.dispatch({ type: 'welcome', message: welcome('default') });
        store.dispatch({ type: 'configure', change: { model: 'h16' } });
        store.dispatch({ type: 'welcome', message: welcome('h16') });
        seen.push(store.get().welcome.model.name);
        store.dispatch({ type: 'welcome', message: welcome('default') });  // reconnected
        seen.push(store.get().welcome.model.name);
        store.dispatch({ type: 'welcome', message: welcome('h16') });  // the replayed configure's
        seen.push(store.get().welcome.model.name);
        // A server without our method refuses the replayed configure: its default-model welcome holds.
        store.dispatch({ type: 'welcome', message: welcome('default', [{ name: 'saliency' }]) });
        seen.push(store.get().welcome.model.name);
        return seen;
    }""")
    assert names == ["h16", "h16", "h16", "default"]


def test_a_second_hidden_neuron_tapped_under_the_prediction_takes_the_current_prediction(visit: Visit) -> None:
    output = visit.page.evaluate("""async () => {
        const { hiddenSelection } = await import('/static/state.js');
        const state = { selection: { output: 3, hidden: 5, alone: false, implicit: true }, frame: { prediction: 8 } };
        return hiddenSelection(state, 9, false).output;
    }""")
    assert output == 8


def test_undo_before_the_first_point_is_sent_keeps_page_and_server_in_step(
        visit: Visit, golden: dict[int, Strokes]) -> None:
    page = visit.page
    draw_with_mouse(visit, golden[1])
    settle(visit)
    # Pen down and Ctrl+Z in one task: the new stroke's first point has not been handed on yet.
    page.evaluate("""() => {
        const pad = document.getElementById('pad');
        pad.setPointerCapture = () => {};  // a synthetic pointer cannot be captured (it is not active)
        const box = pad.getBoundingClientRect();
        const at = { pointerId: 7, isPrimary: true, button: 0, bubbles: true, pointerType: 'mouse',
                     clientX: box.left + box.width / 2, clientY: box.top + box.height / 2 };
        pad.dispatchEvent(new PointerEvent('pointerdown', at));
        document.dispatchEvent(new KeyboardEvent('keydown', { key: 'z', ctrlKey: true, bubbles: true }));
        pad.dispatchEvent(new PointerEvent('pointerup', at));
    }""")
    page.wait_for_timeout(100)  # any undo the page sent is answered by now
    frame = settle(visit)
    assert decode_array(frame["input"]).max() > 0, "the server undid the stroke the page still shows"
    assert ink_pixels(page) > 0


def test_a_refused_comparison_is_no_longer_awaited(context: BrowserContext, server: str) -> None:
    def refuse_compare(page_side: WebSocketRoute) -> None:
        server_side = page_side.connect_to_server()
        server_side.on_message(page_side.send)

        def up(message: str | bytes) -> None:
            request = orjson.loads(message)
            if request["type"] != "compare":
                server_side.send(message)
                return
            # as the server answers a compare over its rate limit
            page_side.send(orjson.dumps({"type": "error", "seq": request["seq"], "code": "rate_limited",
                                         "message": "too many messages"}).decode())

        page_side.on_message(up)

    page = open_routed(context, server, refuse_compare)
    page.click("#compare")
    page.wait_for_selector("#notice:not([hidden])", timeout=WAIT_MS)
    assert "rate_limited" in page.locator("#notice").inner_text()
    assert "Computing" not in page.locator("#compare-note").inner_text()


# ---------- one screen on phones and tablets (issue 12) ----------

STAGE_PARTS = ("pad", "prediction", "heatmap", "network", "status")


def outside_viewport(page: Page) -> list[str]:
    """The stage parts (and the network's output layer) not wholly inside the viewport."""
    return page.evaluate(
        """(parts) => {
          const boxes = parts.map((part) => [part, document.querySelector(`[data-part="${part}"]`)]);
          boxes.push(['output layer', document.querySelector('[data-part="network"] .output-layer')]);
          return boxes.filter(([, element]) => {
            const box = element.getBoundingClientRect();
            return box.height === 0 || box.top < 0 || box.left < 0 || box.bottom > innerHeight + 0.5
              || box.right > innerWidth + 0.5;
          }).map(([name]) => name);
        }""", list(STAGE_PARTS))


def scroll_y(page: Page) -> float:
    return float(page.evaluate("() => window.scrollY"))


@pytest.mark.parametrize("size", [(390, 844), (820, 1180)], ids=["phone-390x844", "tablet-820x1180"])
def test_pad_prediction_heatmap_and_network_share_one_screen(
        browser: Browser, server: str, golden: dict[int, Strokes], size: tuple[int, int]) -> None:
    visit = open_page(browser, server, *size, touch=True)
    try:
        page, wire = visit.page, visit.wire
        assert outside_viewport(page) == []
        draw_with_touch(visit, golden[4])
        frame = settle(visit)
        assert outside_viewport(page) == [] and scroll_y(page) == 0
        j = strongest_hidden(frame)
        # A click, not a CDP tap: on a loaded machine a tap's touchstart and touchend can lie far enough
        # apart to read as a long press (which asks a different question).
        page.locator(f"[data-part=network] .neuron.hidden[data-index='{j}']").click()
        wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
        settle(visit)
        assert heatmap_title(page) == f"What hidden neuron {j} adds to '4'"
        assert outside_viewport(page) == [] and scroll_y(page) == 0
        assert page.locator(f"[data-part=network] .neuron.hidden[data-index='{j}']").get_attribute("aria-pressed") == "true"
    finally:
        visit.context.close()


def test_on_a_phone_every_hidden_neuron_is_one_tap_away(browser: Browser, server: str, golden: dict[int, Strokes]) -> None:
    visit = open_page(browser, server, 390, 844, touch=True)
    try:
        page, wire = visit.page, visit.wire
        draw_with_touch(visit, golden[2])
        frame = settle(visit)
        shown = {int(index) for index in page.locator("[data-part=network] .neuron.hidden").evaluate_all(
            "(groups) => groups.map((g) => g.dataset.index)")}
        hidden = frame["activations"]["shape"][0]
        assert 0 < len(shown) < hidden, "a phone shows a strip of the hidden layer, not the whole grid"
        # The page's order (static/network.js, stripSlots): |R(j → target)|, ties (one byte a value: common)
        # by activation, then by index.
        edges, activations = decode_array(frame["edges"]), decode_array(frame["activations"])
        ranked = sorted(range(hidden), key=lambda j: (-abs(float(edges[j])), -float(activations[j]), j))
        assert shown == set(ranked[:len(shown)]), "the strip is the most relevant"
        page.locator("#network-all").click()
        sheet = page.locator("#network-sheet")
        page.wait_for_function(f"() => document.querySelectorAll('#network-sheet .neuron.hidden').length === {hidden}",
                               timeout=WAIT_MS)
        k = next(index for index in range(hidden) if index not in shown)
        sheet.locator(f".neuron.hidden[data-index='{k}']").click()
        page.wait_for_function("() => !document.getElementById('network-sheet').open", timeout=WAIT_MS)
        wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == k)
        settle(visit)
        assert heatmap_title(page) == f"What hidden neuron {k} adds to '2'"
        strip = page.locator(f"[data-part=network] .neuron.hidden[data-index='{k}']")
        assert strip.get_attribute("aria-pressed") == "true", "the picked neuron joins the strip, selected"
        assert outside_viewport(page) == [] and scroll_y(page) == 0
    finally:
        visit.context.close()


def swipe(visit: Visit, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
    """One finger from ``start`` to ``end`` (viewport px) as CDP touch events, then lifted."""
    cdp = visit.context.new_cdp_session(visit.page)

    def at(t: float) -> list[dict[str, float]]:
        x, y = start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t
        return [{"x": x, "y": y, "radiusX": 4, "radiusY": 4, "force": 0.5, "id": 0}]

    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": at(0)})
    for step in range(1, steps + 1):
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": at(step / steps)})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_a_swipe_on_the_pad_draws_and_one_beside_it_scrolls(browser: Browser, server: str) -> None:
    visit = open_page(browser, server, 390, 844, touch=True)
    try:
        page, wire = visit.page, visit.wire
        box = pad_box(page)
        sent_before = len(wire.sent)
        swipe(visit, to_screen(box, (0.5, 0.85)), to_screen(box, (0.5, 0.1)))
        stroke = wire.wait_sent(lambda m: m["type"] == "stroke", after=sent_before)
        settle(visit)
        assert scroll_y(page) == 0, "a swipe on the pad scrolled the page"
        assert stroke["points"] and ink_pixels(page) > 0
        heatmap = page.locator("[data-part=heatmap]").bounding_box()
        assert heatmap is not None
        strokes_before = len([m for m in wire.sent if m["type"] == "stroke"])
        start = (heatmap["x"] + heatmap["width"] / 2, heatmap["y"] + heatmap["height"] / 2)
        swipe(visit, start, (start[0], start[1] - 250))
        page.wait_for_function("() => window.scrollY > 50", timeout=WAIT_MS)
        assert len([m for m in wire.sent if m["type"] == "stroke"]) == strokes_before, "a swipe beside the pad drew"
    finally:
        visit.context.close()


@dataclass
class Outage:
    """A WebSocket route to the server that can be cut: while down, new connections open but hear nothing."""

    down: bool = False
    routes: list[WebSocketRoute] = field(default_factory=list)

    def route(self, page_side: WebSocketRoute) -> None:
        self.routes.append(page_side)
        if self.down:
            return  # open, silent: no welcome, so the page keeps reconnecting
        server_side = page_side.connect_to_server()
        page_side.on_message(server_side.send)
        server_side.on_message(page_side.send)

    def cut(self) -> None:
        self.down = True
        self.routes[-1].close(code=1012, reason="restart")

    def restore(self) -> None:
        self.down = False
        self.routes[-1].close(code=1012, reason="restart")


def test_an_outage_greys_the_reading_and_the_ink_drawn_meanwhile_reaches_the_server(
        context: BrowserContext, server: str, golden: dict[int, Strokes]) -> None:
    outage = Outage()
    page = open_routed(context, server, outage.route)
    wire = Wire()
    page.on("websocket", wire.attach)
    box = pad_box(page)
    first, *rest = golden[7]

    def draw(strokes: Strokes) -> None:
        for stroke in strokes:
            page.mouse.move(*to_screen(box, stroke[0]))
            page.mouse.down()
            for point in stroke[1:]:
                page.mouse.move(*to_screen(box, point), steps=2)
            page.mouse.up()

    def greyed() -> bool:
        return bool(page.evaluate(
            "() => ['heatmap', 'prediction'].every((part) => {"
            " const style = getComputedStyle(document.querySelector(`[data-part=${part}]`));"
            " return style.filter.includes('grayscale') && Number(style.opacity) < 0.6; })"))

    draw([first])
    page.wait_for_function(CAUGHT_UP, timeout=WAIT_MS)
    assert not greyed() and page.locator("#outage").is_hidden()
    outage.cut()
    page.wait_for_selector("#status[data-status=reconnecting]", timeout=WAIT_MS)
    page.wait_for_selector("#outage:not([hidden])", timeout=WAIT_MS)
    assert greyed()
    assert "Not live" in page.locator("#outage").inner_text()
    draw(rest)  # drawn while the server is out of reach
    outage.restore()
    page.wait_for_selector("#status[data-status=open]", timeout=3 * WAIT_MS)
    page.wait_for_function(CAUGHT_UP, timeout=WAIT_MS)
    replayed = [m for m in wire.sent if m["type"] == "stroke"]
    assert sum(len(m["points"]) for m in replayed) >= sum(len(stroke) for stroke in golden[7])
    frame = wire.wait_received(lambda m: m["type"] == "frame" and m["seq"] is not None and m["seq"] >= replayed[-1]["seq"])
    assert frame["prediction"] == 7, "the server did not get the ink drawn during the outage"
    assert page.locator("[data-part=prediction] #predicted").inner_text() == "7"
    assert not greyed() and page.locator("#outage").is_hidden()


# ---------- exhibition and sharing (issue 17) ----------

def stroke_points_sent(wire: Wire, after: int = 0) -> int:
    return sum(len(m["points"]) for m in wire.sent[after:] if m["type"] == "stroke")


def test_an_example_loads_by_keyboard_and_is_drawn_live(visit: Visit) -> None:
    page, wire = visit.page, visit.wire
    examples = load_examples()
    wrong = next(example for example in examples if example["kind"] == "wrong")
    page.wait_for_selector(".example", timeout=WAIT_MS)
    page.focus("#clear")
    for _ in range(200):  # Tab through the page to the example, as a keyboard user would
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.dataset.index") == str(wrong["index"]):
            break
    else:
        pytest.fail("the example is not reachable with Tab")
    sent_before, received_before = len(wire.sent), len(wire.received)
    page.keyboard.press("Enter")
    first = wire.wait_sent(lambda m: m["type"] == "stroke", after=sent_before)
    # Drawn point by point: frames answer while the example is still being drawn.
    wire.frame_for(first["seq"], after=received_before)
    total = sum(len(stroke) for stroke in wrong["strokes"])
    deadline = 40
    while stroke_points_sent(wire, sent_before) < total and deadline:
        page.wait_for_timeout(250)
        deadline -= 1
    strokes = [m for m in wire.sent[sent_before:] if m["type"] == "stroke"]
    assert stroke_points_sent(wire, sent_before) == total and len(strokes) > len(wrong["strokes"]), "not drawn live"
    frame = settle(visit)
    assert frame["prediction"] != wrong["label"], "the example the model misreads"
    assert page.locator("#predicted").inner_text() == str(frame["prediction"])


def scrub(visit: Visit, position: int) -> dict[str, Any]:
    """Move the timeline to ``position``; the frame answering it, once the page shows it."""
    sent_before = len(visit.wire.sent)
    visit.page.evaluate("""(position) => { const range = document.getElementById('timeline-range');
        range.value = String(position); range.dispatchEvent(new Event('input', { bubbles: true })); }""", position)
    last = visit.wire.wait_sent(lambda m: True, after=sent_before)
    for message in visit.wire.sent[sent_before:]:
        last = message
    visit.page.wait_for_function(f"() => Number(document.getElementById('status').dataset.sentSeq) >= {last['seq']}",
                                 timeout=WAIT_MS)
    return settle(visit)


def test_scrubbing_the_timeline_changes_the_reading(visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    draw_with_mouse(visit, golden[4])
    final = settle(visit)
    assert final["prediction"] == 4
    page.click("#replay")
    page.wait_for_selector("#timeline:not([hidden])", timeout=WAIT_MS)
    total = int(page.locator("#timeline-range").get_attribute("max") or 0)
    assert total == stroke_points_sent(wire)
    readings = []
    for position in (max(1, total // 4), total // 2, total):
        frame = scrub(visit, position)
        assert page.locator("#predicted").inner_text() == str(frame["prediction"])
        assert f"point {position} of {total}" in page.locator("#timeline-label").inner_text()
        readings.append(frame["prediction"])
        inked = int((decode_array(frame["input"]) > 0).sum())
        assert inked > 0
    assert readings[-1] == 4 and set(readings[:-1]) != {4}, f"the reading never changed along the drawing: {readings}"
    # backwards: the server drops the later points
    assert scrub(visit, max(1, total // 4))["prediction"] == readings[0]
    assert not [m for m in wire.received if m["type"] == "error"]


def test_a_share_link_reproduces_the_reading_and_map_elsewhere(
        browser: Browser, server: str, visit: Visit, golden: dict[int, Strokes]) -> None:
    page, wire = visit.page, visit.wire
    draw_with_mouse(visit, golden[3])
    j = strongest_hidden(settle(visit))
    click_neuron(page, "hidden", j)
    wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
    original = settle(visit)
    page.click("#share")
    page.wait_for_function("() => document.getElementById('share-link').value.includes('#v=1')", timeout=WAIT_MS)
    link = page.locator("#share-link").input_value()
    assert len(link) <= 2000 and link.startswith(server)
    elsewhere = open_page(browser, link, 390, 844, touch=True)
    try:
        frame = settle(elsewhere)
        assert frame["prediction"] == 3 and frame["hidden"] == j and frame["mode"] == "crp"
        assert heatmap_title(elsewhere.page) == f"What hidden neuron {j} adds to '3'"
        assert elsewhere.page.locator("#predicted").inner_text() == "3"
        ours, theirs = decode_array(original["heatmap"]), decode_array(frame["heatmap"])
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99, "the shared map differs"
        assert ink_pixels(elsewhere.page) > 0
        assert not [m for m in elsewhere.wire.sent if m["type"] == "stroke" and not m["points"]]
    finally:
        elsewhere.context.close()


def test_a_long_drawing_makes_a_simplified_link_and_says_so(visit: Visit) -> None:
    result = visit.page.evaluate("""async () => {
        const { shareLink, readShareLink, MAX_LINK_CHARS } = await import('/static/share.js');
        const spiral = [Array.from({ length: 1500 }, (_, k) => [0.5 + 0.4 * (k / 1500) * Math.cos(k / 15),
                                                                 0.5 + 0.4 * (k / 1500) * Math.sin(k / 15)])];
        const config = { model: 'default', method: 'lrp', rule: 'epsilon' };
        const link = shareLink('http://127.0.0.1:1/', spiral, { config, selection: { output: 4, hidden: null, alone: false, implicit: false } });
        const back = readShareLink(new URL(link.url).hash);
        return { length: link.url.length, max: MAX_LINK_CHARS, points: link.points, kept: link.kept,
                 strokes: back.strokes.length, readPoints: back.strokes[0].length, output: back.selection.output };
    }""")
    assert result["length"] <= result["max"] and result["points"] == 1500
    assert 2 < result["kept"] < 1500 and result["readPoints"] == result["kept"] and result["output"] == 4


def test_both_exports_download_and_the_json_loads_again(
        browser: Browser, server: str, visit: Visit, golden: dict[int, Strokes], tmp_path: Path) -> None:
    page = visit.page
    draw_with_mouse(visit, golden[5])
    frame = settle(visit)
    with page.expect_download() as png:
        page.click("#export-png")
    png_path = tmp_path / "panel.png"
    png.value.save_as(png_path)
    assert png.value.suggested_filename == "digit-5.png"
    header = png_path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(header[16:20], "big") == 1200
    with page.expect_download() as data:
        page.click("#export-json")
    json_path = tmp_path / "digit.json"
    data.value.save_as(json_path)
    document = orjson.loads(json_path.read_bytes())
    assert document["format"] == "xai-digit-export" and document["frame"]["prediction"] == 5
    assert document["frame"]["seq"] == frame["seq"]
    assert sum(len(stroke) for stroke in document["strokes"]) == stroke_points_sent(visit.wire)
    assert document["versions"]["model"]["sha256"] == model_record(document["config"]["model"])["sha256"]
    assert document["versions"]["rule"]["name"] == frame["rule"] and "description" in document["versions"]["rule"]
    np.testing.assert_allclose(np.asarray(document["frame"]["heatmap"]["values"]).reshape(28, 28),
                               decode_array(frame["heatmap"]), atol=1e-5)
    reloaded = open_page(browser, server)
    try:
        reloaded.page.set_input_files("#import-json", str(json_path))
        loaded = reloaded.wire.wait_received(lambda m: m["type"] == "frame" and m["prediction"] == 5)
        settle(reloaded)
        assert reloaded.page.locator("#predicted").inner_text() == "5"
        assert np.corrcoef(decode_array(loaded["input"]).ravel(), decode_array(frame["input"]).ravel())[0, 1] > 0.999
    finally:
        reloaded.context.close()


def test_kiosk_resets_when_idle_plays_the_attract_loop_and_a_touch_ends_it(
        browser: Browser, server: str, golden: dict[int, Strokes]) -> None:
    visit = open_page(browser, server + "/?kiosk&idle=2", 1920, 1080, touch=True)
    try:
        page, wire = visit.page, visit.wire
        defaults = wire.received[0]["state"]
        draw_with_touch(visit, golden[1])
        page.select_option("#method", "saliency")
        click_neuron(page, "output", 7)
        wire.wait_received(lambda m: m["type"] == "frame" and m["method"] == "saliency" and m["output"] == 7)
        sent_before = len(wire.sent)
        page.wait_for_selector("#cta:not([hidden])", timeout=WAIT_MS)  # nobody touched it for 2 s
        reset = wire.wait_sent(lambda m: m["type"] == "configure", after=sent_before)
        assert reset["method"] == defaults["method"]
        wire.wait_sent(lambda m: m["type"] == "select" and m["output"] is None and m["hidden"] is None, after=sent_before)
        first = load_examples()[0]
        # The attract loop draws the first example stroke by stroke; the network answers live.
        frame = wire.wait_received(lambda m: m["type"] == "frame" and m["method"] == defaults["method"]
                                   and m["prediction"] == first["label"] and m["output"] is None)
        assert frame["hidden"] is None
        assert page.locator("#predicted").inner_text() in {"–", *map(str, range(10))}
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "kiosk-attract-1920x1080.png"))
        assert page.evaluate("() => getComputedStyle(document.body).userSelect") == "none"
        assert page.evaluate("() => !document.body.dispatchEvent(new MouseEvent('contextmenu', {bubbles: true, cancelable: true}))")
        page.touchscreen.tap(960, 20)  # a touch anywhere, here on the title
        page.wait_for_selector("#cta", state="hidden", timeout=WAIT_MS)
        after = len(wire.sent)
        page.wait_for_timeout(600)
        assert not [m for m in wire.sent[after:] if m["type"] == "stroke"], "the attract loop went on after a touch"
        final = settle(visit)
        assert decode_array(final["input"]).max() == 0, "the pad was not cleared for the visitor"
    finally:
        visit.context.close()


def test_a_kiosk_reconnects_by_itself_after_a_refused_connection(context: BrowserContext, server: str) -> None:
    outage = Outage()
    page = open_routed(context, server + "/?kiosk&idle=60", outage.route)
    outage.routes[-1].close(code=1008, reason="policy")  # a page would wait for a touch; a kiosk may not
    page.wait_for_selector("#status[data-status=closed]", timeout=WAIT_MS)
    page.wait_for_selector("#status[data-status=open]", timeout=3 * WAIT_MS)


LIVE_REGION_CHANGES = """() => {
    window.__announced = [];
    const regions = document.querySelectorAll('[aria-live], [role=status], [role=alert], [role=log]');
    const observer = new MutationObserver((records) => records.forEach((record) => {
        const region = record.target.nodeType === 1 ? record.target.closest('[aria-live], [role]') : record.target.parentElement;
        window.__announced.push(region ? region.textContent : '');
    }));
    regions.forEach((region) => observer.observe(region, { childList: true, characterData: true, subtree: true }));
    return regions.length;
}"""


def test_live_regions_stay_quiet_while_drawing_and_announce_the_settled_reading(
        visit: Visit, golden: dict[int, Strokes]) -> None:
    page = visit.page
    page.wait_for_timeout(1200)  # the first frame's announcement is made
    assert page.evaluate(LIVE_REGION_CHANGES) >= 1
    box = pad_box(page)
    for stroke in golden[3]:  # at a hand's pace, never waiting for the server
        page.mouse.move(*to_screen(box, stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*to_screen(box, point), steps=3)
        page.mouse.up()
    assert page.evaluate("() => window.__announced") == [], "a live region changed while the pen moved"
    settle(visit)
    page.wait_for_function("() => window.__announced.length > 0", timeout=WAIT_MS)
    announced = page.evaluate("() => window.__announced")
    assert len(announced) == 1 and announced[0].startswith("It reads 3, ")
    labels = page.locator("#bars li").evaluate_all("(items) => items.map((item) => item.getAttribute('aria-label'))")
    assert labels[3] == f"3: {round(settle(visit)['probabilities'][3] * 100)} percent"
    assert all(re.fullmatch(r"\d: \d+ percent", label) for label in labels)


# ---------- accessibility: WCAG 2.2 AA (issue 17) ----------

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def run_axe(page: Page) -> dict[str, Any]:
    """axe-core's WCAG 2.2 A/AA results for the page as it is: violations and "needs review" items."""
    if not AXE.is_file():
        pytest.skip(f"axe-core missing at {AXE}: `make test` installs it with npm (package.json)")
    page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """async (tags) => { const result = await axe.run(document, { runOnly: { type: 'tag', values: tags } });
          const nodes = (rule) => rule.nodes.map((node) => ({ target: node.target.join(' '),
            inDiagram: document.querySelector(node.target.join(' '))?.closest('svg.network-svg') !== null }));
          return { violations: result.violations.map((rule) => ({ id: rule.id, nodes: nodes(rule) })),
                   incomplete: result.incomplete.map((rule) => ({ id: rule.id, nodes: nodes(rule) })) }; }""",
        WCAG_TAGS)


@pytest.mark.parametrize("name", list(SCREEN_SIZES))
def test_axe_finds_no_wcag_violation(browser: Browser, server: str, golden: dict[int, Strokes], name: str) -> None:
    visit = open_page(browser, server, *SCREEN_SIZES[name])
    try:
        page = visit.page
        draw_with_mouse(visit, golden[4])
        j = strongest_hidden(settle(visit))
        click_neuron(page, "hidden", j)
        visit.wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == j)
        page.wait_for_selector(".card-body:not([hidden]) .thumbs .thumb", timeout=WAIT_MS)
        settle(visit)
        result = run_axe(page)
        assert result["violations"] == []
        # axe cannot find the background of SVG text (circles and lines are not CSS backgrounds): it asks for
        # review of the diagram's labels, which test_diagram_text_contrast checks exactly. Nothing else.
        review = [(rule["id"], node["target"]) for rule in result["incomplete"] for node in rule["nodes"]
                  if rule["id"] != "color-contrast" or not node["inDiagram"]]
        assert review == []
    finally:
        visit.context.close()


def test_diagram_text_contrast(visit: Visit, golden: dict[int, Strokes]) -> None:
    """Every text of the diagram against what lies under it: a neuron's label on its circle, other
    text on the white panel; WCAG 2.2 SC 1.4.3 asks 4.5:1 for text below 18.66 px bold / 24 px."""
    draw_with_mouse(visit, golden[8])
    settle(visit)
    ratios = visit.page.evaluate("""() => {
        const luminance = (colour) => {
          const [r, g, b] = colour.match(/[\\d.]+/g).slice(0, 3).map(Number).map((c) => {
            const s = c / 255; return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; });
          return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
        const ratio = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
        return [...document.querySelectorAll('[data-part=network] svg text')].filter((t) => t.textContent.trim())
          .map((text) => {
            const circle = text.closest('.neuron, .rank')?.querySelector('circle');  // a label, a rank badge
            const under = circle ? getComputedStyle(circle).fill : 'rgb(255, 255, 255)';
            return [text.textContent, ratio(getComputedStyle(text).fill, under)]; });
    }""")
    assert len(ratios) > 100
    assert [(text, round(ratio, 2)) for text, ratio in ratios if ratio < 4.5] == []


def test_keyboard_focus_shows_on_a_selected_neuron(visit: Visit, golden: dict[int, Strokes]) -> None:
    page = visit.page
    draw_with_mouse(visit, golden[2])
    settle(visit)
    page.focus("#upload")  # the last of the pad's controls (Undo, Clear, Replay, Photo)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # selects the focused neuron: its black frame and the focus ring coincide
    hidden = focused_neuron(page)["index"]
    visit.wire.wait_received(lambda m: m["type"] == "frame" and m["hidden"] == hidden)
    settle(visit)
    box = page.locator(f"[data-part=network] .neuron.hidden[data-index='{hidden}'] .hit").bounding_box()
    assert box is not None
    shot = page.screenshot(clip={"x": box["x"] - 3, "y": box["y"] - 3, "width": box["width"] + 6, "height": box["height"] + 6})
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), dtype=np.int16).reshape(-1, 3)
    violet = np.abs(pixels - np.array([124, 58, 237])).max(axis=1) < 40
    assert violet.sum() > 4 * box["width"], "the focus ring is hidden under the selection frame"


def test_the_diagram_shows_each_hidden_neurons_weight_template(visit: Visit, golden: dict[int, Strokes]) -> None:
    page = visit.page
    draw_with_mouse(visit, golden[6])
    settle(visit)
    hidden = page.locator("[data-part=network] .neuron.hidden").count()
    page.check("#templates")
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-part=network] .template[visibility=visible]').length === n",
        arg=hidden, timeout=WAIT_MS)
    model = visit.wire.received[0]["model"]["name"]
    weights = decode_array(orjson.loads(urllib.request.urlopen(f"{page.url.rstrip('/')}/api/models/{model}/weights",
                                                               timeout=10).read())["weights"])
    for j in (0, hidden // 2, hidden - 1):
        shown = page.evaluate("""async (j) => {
            const href = document.querySelector(`[data-part=network] .neuron.hidden[data-index='${j}'] .template`).getAttribute('href');
            const image = new Image(); image.src = href; await image.decode();
            const canvas = document.createElement('canvas'); canvas.width = canvas.height = 28;
            const context = canvas.getContext('2d'); context.drawImage(image, 0, 0);
            return Array.from(context.getImageData(0, 0, 28, 28).data); }""", j)
        pixels = np.asarray(shown, dtype=np.int16).reshape(-1, 4)[:, :3]
        assert np.abs(pixels - expected_colours(page, weights[j])).max() <= 2, f"neuron {j}'s template is not W1[{j}]"
    page.uncheck("#templates")
    page.wait_for_function("() => !document.querySelector('[data-part=network] .template[visibility=visible]')",
                           timeout=WAIT_MS)
