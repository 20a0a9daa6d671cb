"""The cnn on the page (issue 24, "The page"), in Debian's chromium against a real server and its store.

A visitor on a phone switches to the convolutional model, draws, taps a channel tile and sees the
heatmap become that channel's CRP map and the channel's card fill with its reference samples; the
MLP diagram is still what the default model shows; the stage stays on one screen; frames stay small.
What the page shows is read from its DOM and canvases, what it sent and received off the wire.

The store is the one the server loads (``MODEL_STORE_DIR``, else the shipped store): without a model
named ``cnn`` in it the module is skipped, saying so.
"""

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest
from playwright.sync_api import Browser, Page
from test_page import (
    SCREENSHOTS,
    WAIT_MS,
    Strokes,
    Visit,
    Wire,
    browser,
    draw_with_touch,
    expected_colours,
    golden,
    heatmap_title,
    open_live,
    outside_viewport,
    run_axe,
    scroll_y,
    server,
    settle,
    shown_heatmap,
    small_texts,
)

from model_store.manifest import model_names
from support import Visitor, decode_array

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif("cnn" not in model_names(), reason="the model store has no 'cnn' model yet")]
__all__ = ["browser", "golden", "server"]  # module fixtures shared with test_page

CNN = "cnn"
MAX_FRAME_BYTES = 4000  # issue 24: frames ≤ 4,000 bytes for the cnn too
PHONE = (390, 844)
TABLET = (820, 1180)


def open_cnn(browser: Browser, url: str, width: int, height: int) -> Visit:
    """A touch page at ``url`` switched to the cnn with the model picker, once the cnn's diagram is built."""
    visit = open_live(browser, url, width, height, touch=True)
    page, wire = visit.page, visit.wire
    welcome = wire.wait_received(lambda m: m["type"] == "welcome")
    if welcome["model"]["name"] != CNN:
        page.select_option("#model", CNN)
        wire.wait_received(lambda m: m["type"] == "welcome" and m["model"]["name"] == CNN)
    wire.wait_received(lambda m: m["type"] == "frame" and m["model"] == CNN)
    page.wait_for_selector("[data-part=network] .convnet .tile", timeout=WAIT_MS)
    return visit


@pytest.fixture
def phone(browser: Browser, server: str) -> Iterator[Visit]:
    opened = open_cnn(browser, server, *PHONE)
    yield opened
    opened.context.close()
    assert not [e for e in opened.errors if "favicon" not in e], opened.errors


def strongest_channel(frame: dict[str, Any], layer: str) -> int:
    """The channel of ``layer`` with the most relevance for the frame's class (frame.channels)."""
    return int(np.argmax(decode_array(frame["channels"][layer]["relevance"])))


def tile(page: Page, layer: str, channel: int) -> Any:
    return page.locator(f"[data-part=network] .tile[data-layer='{layer}'][data-channel='{channel}']")


def card_text(page: Page) -> str:
    return page.locator("[data-part=concept-card]").inner_text()


def tap(element: Any) -> None:
    """A tap on a touch page. A click, not a CDP touch tap: on a loaded machine a tap's touchstart and
    touchend can lie far enough apart to read as a long press, which clicks nothing (as in test_page)."""
    element.click()


def tap_channel(visit: Visit, frame: dict[str, Any], layer: str) -> tuple[int, dict[str, Any]]:
    """Tap the most relevant tile of ``layer``; return the channel and the CRP frame answering it."""
    channel = strongest_channel(frame, layer)
    sent_before = len(visit.wire.sent)
    tap(tile(visit.page, layer, channel))
    select = visit.wire.wait_sent(lambda m: m["type"] == "select", after=sent_before)
    assert (select["layer"], select["hidden"]) == (layer, channel)
    crp = visit.wire.wait_received(lambda m: m["type"] == "frame" and m["seq"] is not None and m["seq"] >= select["seq"])
    settle(visit)
    return channel, crp


def test_a_tapped_channel_tile_conditions_the_heatmap_and_fills_its_card(phone: Visit,
                                                                         golden: dict[int, Strokes]) -> None:
    page, wire = phone.page, phone.wire
    assert page.locator("[data-part=network] .neuron").count() == 0, "the MLP's diagram is gone for the cnn"
    draw_with_touch(phone, golden[4])
    lrp = settle(phone)
    assert lrp["prediction"] == 4 and lrp["mode"] == "lrp"
    before = shown_heatmap(page)
    assert not page.locator("[data-part=concept-card] .concept-hint").first.is_hidden()
    # The most relevant channel of each layer carries rank 1: the tile a visitor is shown to tap.
    k = strongest_channel(lrp, "conv2")
    assert tile(page, "conv2", k).locator(".tile-rank").inner_text() == "1"

    channel, crp = tap_channel(phone, lrp, "conv2")
    assert (crp["mode"], crp["layer"], crp["hidden"], crp["target"]) == ("crp", "conv2", channel, 4)
    assert heatmap_title(page) == f"What conv2 channel {channel} adds to '4'"
    crp_map = decode_array(crp["heatmap"])
    after = shown_heatmap(page)
    expected = expected_colours(page, crp_map, max(crp["class_max_abs"], float(np.abs(crp_map).max())))
    assert np.abs(after - expected).max() <= 2, "the canvas does not show the channel's CRP map"
    assert np.abs(after - before).max() > 20, "the heatmap did not change"
    assert tile(page, "conv2", channel).get_attribute("aria-pressed") == "true"

    # The card: the channel, its live facts and map, and its reference samples from the concepts route.
    page.wait_for_selector("[data-part=relmax] .concept-sample", timeout=WAIT_MS)
    text = card_text(page)
    assert text.startswith(f"conv2 channel {channel}")
    assert "rank 1 of 16" in text and "Relevance for '4' +" in text
    concepts = page.evaluate("(url) => fetch(url).then((r) => r.json())", f"/api/models/{CNN}/concepts/conv2/{channel}")
    for part in ("relmax", "actmax"):
        samples = page.locator(f"[data-part={part}] .concept-sample")
        assert samples.count() == len(concepts[part]["index"]) > 0
        assert samples.first.locator("figcaption").inner_text() == f"#{concepts[part]['index'][0]}"
    patch = decode_array(concepts["relmax"]["patch"])[0]
    shown_patch = page.evaluate(
        """() => { const c = document.querySelector('[data-part=relmax] .concept-sample canvas');
          return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""")
    assert shown_patch[:2] == [patch.shape[1], patch.shape[0]]
    ink = page.evaluate("async (values) => { const { sequential } = await import('/static/colormap.js');"
                        " return values.map((v) => sequential(v)); }", patch.reshape(-1).tolist())
    assert np.abs(np.asarray(shown_patch[2], dtype=np.int16).reshape(-1, 4)[:, :3] - np.asarray(ink)).max() <= 2
    live = page.locator("[data-part=concept-card] .card-figure").first
    assert live.is_visible() and "CRP" in live.inner_text()
    assert outside_viewport(page) == [] and scroll_y(page) == 0

    # Tapped again: back to the class's LRP map, the card closed.
    sent_before = len(wire.sent)
    tap(tile(page, "conv2", channel))
    cleared = wire.wait_sent(lambda m: m["type"] == "select", after=sent_before)
    assert cleared["hidden"] is None and "layer" not in cleared
    back = wire.wait_received(lambda m: m["type"] == "frame" and m["seq"] is not None and m["seq"] >= cleared["seq"])
    settle(phone)
    assert back["mode"] == "lrp" and back["layer"] is None
    assert tile(page, "conv2", channel).get_attribute("aria-pressed") == "false"
    assert heatmap_title(page) == "Why the network reads '4'"
    assert page.locator("[data-part=concept-card] .concept-body").is_hidden()


def test_a_conv2_card_lists_the_conv1_channels_feeding_it(phone: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_touch(phone, golden[7])
    frame = settle(phone)
    channel, crp = tap_channel(phone, frame, "conv2")
    assert crp["feeds"]["layer"] == "conv1"
    feeds = decode_array(crp["feeds"]["relevance"])
    strongest = int(np.argmax(feeds))
    first = phone.page.locator("[data-part=concept-card] .concept-feed").first
    assert first.get_attribute("data-channel") == str(strongest)
    # A feed is a way down the graph: tapping it selects that conv1 channel.
    sent_before = len(phone.wire.sent)
    tap(first)
    select = phone.wire.wait_sent(lambda m: m["type"] == "select", after=sent_before)
    assert (select["layer"], select["hidden"]) == ("conv1", strongest)
    settle(phone)
    assert card_text(phone.page).startswith(f"conv1 channel {strongest}")


def test_a_share_link_keeps_the_selected_channel(browser: Browser, server: str, phone: Visit,
                                                  golden: dict[int, Strokes]) -> None:
    draw_with_touch(phone, golden[2])
    channel, original = tap_channel(phone, settle(phone), "conv2")
    phone.page.click("#share")
    phone.page.wait_for_function("() => document.getElementById('share-link').value.includes('#v=1')", timeout=WAIT_MS)
    link = phone.page.locator("#share-link").input_value()
    assert "l=conv2" in link and len(link) <= 2000
    elsewhere = open_cnn(browser, link, *TABLET)
    try:
        frame = settle(elsewhere)
        assert (frame["model"], frame["layer"], frame["hidden"], frame["mode"]) == (CNN, "conv2", channel, "crp")
        assert heatmap_title(elsewhere.page) == f"What conv2 channel {channel} adds to '2'"
        assert tile(elsewhere.page, "conv2", channel).get_attribute("aria-pressed") == "true"
        ours, theirs = decode_array(original["heatmap"]), decode_array(frame["heatmap"])
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99, "the shared map differs"
    finally:
        elsewhere.context.close()


def rule_options(page: Page) -> list[str]:
    return page.locator("#rule option").evaluate_all("(options) => options.map((o) => o.value)")


def test_switching_models_on_a_phone_rebuilds_the_diagram_and_the_pickers(browser: Browser, server: str,
                                                                          golden: dict[int, Strokes]) -> None:
    context = browser.new_context(viewport={"width": PHONE[0], "height": PHONE[1]}, has_touch=True, is_mobile=True,
                                  reduced_motion="reduce")  # a blank pad on arrival (static/arrival.js)
    try:
        page = context.new_page()
        wire = Wire()
        page.on("websocket", wire.attach)
        page.goto(server)
        page.wait_for_selector("#status[data-status=open]", timeout=WAIT_MS)
        first = wire.wait_received(lambda m: m["type"] == "welcome")
        mlp = next(model["name"] for model in first["models"] if model["family"] == "mlp")
        # Whatever the default: an MLP, the cnn, the MLP again, each from its own welcome.
        for name in (mlp, CNN, mlp):
            if name != page.locator("#model").input_value():
                page.select_option("#model", name)
            welcome = wire.wait_received(lambda m, name=name: m["type"] == "welcome" and m["model"]["name"] == name)
            cnn = welcome["model"]["family"] == "cnn"
            page.wait_for_selector("[data-part=network] .convnet" if cnn else "[data-part=network] .neuron.hidden",
                                   timeout=WAIT_MS)
            assert page.locator("[data-part=network] .neuron.output").count() == (0 if cnn else 10)
            assert page.locator("[data-part=network] .convnet .tile").count() == (8 + 16 if cnn else 0)
            assert rule_options(page) == [rule["name"] for rule in welcome["rules"]]
            # The server fell back to the family's default rule: the picker shows it, never a blank.
            assert page.locator("#rule").input_value() == welcome["state"]["rule"]
            methods = page.locator("#method option").evaluate_all("(options) => options.map((o) => o.value)")
            assert ("gradcam" in methods) == cnn and methods == [m["name"] for m in welcome["methods"]]
            assert page.locator("#card").is_hidden() == cnn
            assert page.locator("[data-part=concept-card]").is_hidden() != cnn
        # The MLP reads a drawing again after the round trip.
        draw_with_touch(Visit(context, page, wire, []), golden[1])
        assert page.locator("#predicted").inner_text() == str(settle(Visit(context, page, wire, []))["prediction"])
    finally:
        context.close()


@pytest.mark.parametrize("size", [PHONE, TABLET], ids=["phone-390x844", "tablet-820x1180"])
def test_cnn_screenshots_one_screen_with_44px_targets(browser: Browser, server: str, golden: dict[int, Strokes],
                                                       size: tuple[int, int]) -> None:
    visit = open_cnn(browser, server, *size)
    try:
        page = visit.page
        draw_with_touch(visit, golden[3])
        frame = settle(visit)
        assert outside_viewport(page) == [] and scroll_y(page) == 0
        tap_channel(visit, frame, "conv2")  # with its feeds: lines from conv1 into it
        page.wait_for_selector("[data-part=relmax] .concept-sample", timeout=WAIT_MS)
        page.evaluate("() => window.scrollTo(0, 0)")
        assert outside_viewport(page) == [] and scroll_y(page) == 0
        # Every tile and output of the diagram inside the viewport and a 44 × 44 px tap target.
        boxes = page.locator("[data-part=network] .convnet button").evaluate_all(
            "(buttons) => buttons.map((b) => { const r = b.getBoundingClientRect();"
            " return [b.getAttribute('aria-label'), r.width, r.height, r.bottom <= innerHeight + 0.5]; })")
        assert len(boxes) == 8 + 16 + 10
        assert [box for box in boxes if box[1] < 44 or box[2] < 44 or not box[3]] == []
        assert page.evaluate("() => document.documentElement.scrollWidth") <= size[0], "horizontal overflow"
        assert small_texts(page) == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"cnn-{size[0]}x{size[1]}.png"))
    finally:
        visit.context.close()


def test_axe_finds_no_wcag_violation_on_the_cnn_view(phone: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_touch(phone, golden[5])
    tap_channel(phone, settle(phone), "conv2")
    phone.page.wait_for_selector("[data-part=relmax] .concept-sample", timeout=WAIT_MS)
    result = run_axe(phone.page)
    assert result["violations"] == []
    # The MLP's diagram is SVG (test_page asks nothing of it here); the cnn's is HTML: nothing to review
    # but the channel tiles' rank badges, which lie over a canvas (their contrast is fixed: white on
    # #b2182b, 6.1:1) and the outputs' digits, over colours set per frame (prefersDarkText).
    review = [(rule["id"], node["target"]) for rule in result["incomplete"] for node in rule["nodes"]
              if not (rule["id"] == "color-contrast" and (".tile-rank" in node["target"] or "convnet-output" in node["target"]))]
    assert review == []


async def cnn_frame_sizes(url: str, strokes: Strokes) -> list[int]:
    """Bytes of every frame a cnn visitor gets while drawing ``strokes``, then with a conv2 channel selected."""
    sizes: list[int] = []

    async def frames_until(visitor: Visitor, seq: int) -> dict[str, Any]:
        while True:
            raw = await asyncio.wait_for(visitor.connection.recv(), 10)
            message = orjson.loads(raw)
            if message["type"] == "frame":
                sizes.append(len(raw.encode() if isinstance(raw, str) else raw))
                if message["seq"] is not None and message["seq"] >= seq:
                    return message

    async with Visitor.connect(url) as visitor:
        await visitor.send("configure", model=CNN)
        await visitor.recv_type("welcome")
        frame = await frames_until(visitor, await visitor.draw(strokes))
        channel = strongest_channel(frame, "conv2")
        crp = await frames_until(visitor, await visitor.send("select", output=None, hidden=channel, layer="conv2"))
        assert crp["layer"] == "conv2" and crp["feeds"] is not None  # the largest frame: feeds too
    return sizes


def test_cnn_frames_stay_under_4000_bytes(server: str, golden: dict[int, Strokes]) -> None:
    # A thread of its own: Playwright's sync API (the module's browser) keeps an event loop on this one.
    with ThreadPoolExecutor(max_workers=1) as thread:
        sizes = thread.submit(asyncio.run, cnn_frame_sizes(server, golden[8])).result()
    assert len(sizes) >= 2
    assert max(sizes) <= MAX_FRAME_BYTES, f"cnn frames of {sorted(sizes)[-3:]} bytes"
