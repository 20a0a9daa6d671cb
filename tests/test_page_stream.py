"""The page's side of streaming in a real browser: acknowledging painted frames (flow control), an honest
status when the display falls behind, and ink drawn during an outage reaching the server.

Fixtures and helpers are test_page.py's (one server and one browser per module).
"""


import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from test_page import (  # noqa: F401
    WAIT_MS,
    HeldMessages,
    Strokes,
    Visit,
    browser,
    context,
    draw_with_mouse,
    golden,
    open_page,
    open_routed,
    pad_box,
    scripted,
    server,
    settle,
    to_screen,
    visit,
)

from support import server_process

pytestmark = pytest.mark.browser


def test_the_page_acknowledges_the_frames_it_paints(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[3])
    last = settle(visit)
    ack = visit.wire.wait_sent(lambda m: m["type"] == "ack" and m["frame"] == last["frame"])
    acks = [m["frame"] for m in visit.wire.sent if m["type"] == "ack"]
    assert acks == sorted(set(acks)) and acks[-1] == ack["frame"]
    assert "seq" not in ack  # outside the seq numbering: frames still reach the last seq sent
    assert not [m for m in visit.wire.received if m["type"] == "error"]


def test_frames_the_page_never_shows_are_acknowledged_at_once(visit: Visit) -> None:
    # After a reconnect the frames before the replay are dropped unseen: held unacknowledged they would
    # hold back the frames the visitor waits for.
    acks = scripted(visit, """
        server.emit({ type: 'frame', frame: 1, seq: null });
        socket.painted({ frame: 1 });
        socket.painted({ frame: 7 });  // never received on this connection
        server.emit({ type: 'frame', frame: 2, seq: replayed });
        socket.painted({ frame: 2 });
        socket.painted({ frame: 2 });
        return server.sent.filter((m) => m.type === 'ack').map((m) => m.frame);""")
    assert acks == [1, 2]


def status(page: Page) -> tuple[str, str]:
    line = page.locator("#status")
    return line.get_attribute("data-tone") or "", line.inner_text()


def wait_for_tone(page: Page, tone: str) -> None:
    page.wait_for_function("(tone) => document.getElementById('status').dataset.tone === tone", arg=tone,
                           timeout=WAIT_MS)


def test_the_status_says_slow_connection_while_the_display_lags_the_pen(context: BrowserContext,
                                                                        server: str) -> None:
    held = HeldMessages("frame", holding=False)
    page = open_routed(context, server, held.route)
    box = pad_box(page)
    assert status(page)[0] == "ok"
    held.holding = True  # the frames of this dot take "a slow link"
    page.locator("#pad").click(position={"x": 0.5 * box["width"], "y": 0.5 * box["height"]})
    wait_for_tone(page, "wait")
    assert status(page)[1].startswith("Slow connection · ")
    wait_for_tone(page, "stop")
    assert status(page)[1].startswith("Very slow connection · ")
    held.release()
    page.locator("#pad").click(position={"x": 0.8 * box["width"], "y": 0.8 * box["height"]})  # a dot, answered at once
    wait_for_tone(page, "ok")
    assert status(page)[1].startswith("Live · ")


def test_ink_drawn_while_the_server_is_away_reaches_it_after_the_reconnect(
        browser: Browser, golden: dict[int, Strokes]) -> None:
    strokes = next(strokes for digit, strokes in golden.items() if len(strokes) >= 2)
    digit = next(digit for digit, candidate in golden.items() if candidate is strokes)
    with server_process() as first:
        visit = open_page(browser, first.url)
        page, wire = visit.page, visit.wire
        draw_with_mouse(visit, strokes[:1])
        settle(visit)
    page.wait_for_selector("#status[data-status=reconnecting]", timeout=WAIT_MS)
    try:
        box = pad_box(page)
        for stroke in strokes[1:]:  # drawn during the outage: nothing can be sent
            page.mouse.move(*to_screen(box, stroke[0]))
            page.mouse.down()
            for point in stroke[1:]:
                page.mouse.move(*to_screen(box, point), steps=2)
            page.mouse.up()
        sent_before = len(wire.sent)
        with server_process(env={"PORT": first.url.rsplit(":", 1)[1]}):
            page.wait_for_selector("#status[data-status=open]", timeout=3 * WAIT_MS)
            frame = settle(visit)
            replayed = [m for m in wire.sent[sent_before:] if m["type"] == "stroke"]
            assert len(replayed) == len(strokes)
            assert sum(len(m["points"]) for m in replayed[1:]) >= sum(len(stroke) for stroke in strokes[1:])
            assert frame["prediction"] == digit
    finally:
        visit.context.close()


def test_every_status_fits_one_line_on_a_phone(browser: Browser, server: str) -> None:
    visit = open_page(browser, server, 390, 844, touch=True)
    try:
        widths = visit.page.evaluate("""async () => {
            const { describeStatus } = await import('/static/status.js');
            const line = document.getElementById('status');
            const open = { status: 'open', retryInMs: null, code: null };
            return [120, 480, 12500].map((lagMs) => {
                line.textContent = describeStatus(open, { lagMs, fps: 60 }).text;
                return document.documentElement.scrollWidth;
            });
        }""")
        assert widths == [390, 390, 390], "a status line wider than the phone scrolls the page sideways"
    finally:
        visit.context.close()
