"""Teaching from the page (static/teach.js): consent asked each time, the token kept (not in kiosk mode), forget.

Same harness as tests/test_page.py (Debian chromium via Playwright, a real server process).
"""

import sqlite3
from pathlib import Path

import pytest
from test_page import (  # noqa: F401
    WAIT_MS,
    Strokes,
    Visit,
    browser,
    draw_with_mouse,
    golden,
    open_page,
    run_axe,
    server,
    settle,
    visit,
)

from server.teaching.database import SQLITE_FILE

pytestmark = pytest.mark.browser


def stored_ids(data_dir: Path) -> list[int]:
    with sqlite3.connect(data_dir / SQLITE_FILE) as connection:
        return [row[0] for row in connection.execute("SELECT id FROM drawings ORDER BY id")]


def teach_from_dialog(visit: Visit, digit: int) -> dict:
    """Open the dialog, pick ``digit``, agree, store; the ``taught`` the page received."""
    page = visit.page
    page.locator("[data-part=teach]").click()
    dialog = page.locator("[data-part=teach-dialog]")
    assert dialog.is_visible()
    store = page.locator("[data-part=teach-send]")
    assert page.locator("#teach-consent").is_checked() is False  # asked each time
    assert store.is_disabled()
    dialog.locator(f"input[name=label][value='{digit}']").check()
    assert store.is_disabled()  # a digit alone is not consent
    page.locator("#teach-consent").check()
    sent_before = len(visit.wire.sent)
    store.click()
    sent = visit.wire.wait_sent(lambda m: m["type"] == "teach", sent_before)
    assert {key: sent[key] for key in ("type", "label", "consent")} == {"type": "teach", "label": digit, "consent": True}
    taught = visit.wire.wait_received(lambda m: m["type"] == "taught")
    page.wait_for_function("() => document.querySelector('.teach-status').textContent.includes('Thank you')",
                           timeout=WAIT_MS)
    return taught


def test_a_visitor_teaches_then_forgets(visit: Visit, golden: dict[int, Strokes], data_dir: Path) -> None:
    page = visit.page
    assert page.locator("[data-part=teach]").is_disabled()  # nothing drawn, nothing to teach
    draw_with_mouse(visit, golden[5])
    settle(visit)
    text = page.locator(".teach-consent").inner_text()
    assert "strokes" in text and "digit you choose" in text and "what the network read" in text
    taught = teach_from_dialog(visit, 5)
    assert taught["id"] in stored_ids(data_dir)
    kept = page.evaluate("() => JSON.parse(localStorage.getItem('xai-taught'))")
    assert kept == [{"id": taught["id"], "token": taught["delete_token"], "label": 5}]
    page.locator("[data-part=teach-dialog] button", has_text="Close").click()
    item = page.locator(f"[data-part=forget][data-id='{taught['id']}']")
    item.click()
    forgotten = visit.wire.wait_received(lambda m: m["type"] == "forgotten")
    assert forgotten == {"type": "forgotten", "id": taught["id"]}
    page.wait_for_function("() => JSON.parse(localStorage.getItem('xai-taught')).length === 0", timeout=WAIT_MS)
    assert taught["id"] not in stored_ids(data_dir)
    assert page.locator("[data-part=forget]").count() == 0


def test_the_teach_dialog_passes_axe(visit: Visit, golden: dict[int, Strokes]) -> None:
    draw_with_mouse(visit, golden[2])
    settle(visit)
    visit.page.locator("[data-part=teach]").click()
    assert run_axe(visit.page)["violations"] == []


def test_a_kiosk_keeps_no_token(browser, server: str, golden: dict[int, Strokes], data_dir: Path) -> None:
    visit = open_page(browser, server + "/?kiosk&idle=600")
    try:
        draw_with_mouse(visit, golden[8])
        settle(visit)
        taught = teach_from_dialog(visit, 8)
        assert taught["id"] in stored_ids(data_dir)
        assert visit.page.evaluate("() => localStorage.getItem('xai-taught')") is None
        assert visit.page.locator("#taught").count() == 0  # no list of drawings on a shared screen
    finally:
        visit.context.close()
