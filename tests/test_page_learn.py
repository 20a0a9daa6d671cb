"""The curator's page in a real browser: log in through the form, look at a proposed drawing, confirm it."""

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Browser
from test_curator import PASSWORD, seed, store_with_a_round
from test_page import WAIT_MS, browser, run_axe  # noqa: F401

from model_store.strokes import load_golden_digits
from support import server_process

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def learn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("learn-page")
    store, _, _, _ = store_with_a_round(data_dir)
    with server_process({"DATA_DIR": str(data_dir), "CURATOR_PASSWORD": PASSWORD, "MODEL_STORE_DIR": str(store)}) \
            as server:
        golden = load_golden_digits()
        drawings = [(tuple(tuple(map(tuple, s)) for s in golden[d]), d) for d in range(10)]
        # Playwright's sync API runs an event loop in this thread: seed from another.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, seed(data_dir, drawings)).result()
        yield server.url, data_dir


def test_a_curator_logs_in_explains_and_confirms(browser: Browser, learn_server: tuple[str, Path]) -> None:
    url, _ = learn_server
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(url + "/learn")
        assert page.url.endswith("/learn/login")
        page.fill("input[name=password]", "not it")
        page.click("button[type=submit]")
        assert "Wrong password." in page.locator("[role=alert]").inner_text()
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/learn", timeout=WAIT_MS)
        page.wait_for_selector("[data-part=proposed] button", timeout=WAIT_MS)
        assert page.locator("[data-part=pool-map] circle").count() == 10
        page.wait_for_selector("[data-part=rounds] [data-round='0']", timeout=WAIT_MS)  # the shipped version
        assert page.locator("[data-round='1'] [data-part=round-maps] canvas").count() == 2  # old | new
        assert "embedded validation: 98.0 % → 98.2 %" in page.locator("[data-round='1']").inner_text()
        page.select_option("[data-part=strategy]", "ranked_batch")
        page.wait_for_function("() => document.getElementById('pool-summary').textContent.includes('ranked batch')",
                               timeout=WAIT_MS)
        first = page.locator("[data-part=proposed] button").first
        drawing = first.get_attribute("data-id")
        first.click()
        page.wait_for_selector("[data-part=moderate] [data-action=confirm]", timeout=WAIT_MS)
        assert page.locator("#detail canvas").count() == 2  # the drawing and its contrast map
        assert "Pulling towards" in page.locator("#detail").inner_text()
        assert run_axe(page)["violations"] == []
        page.click("[data-part=moderate] [data-action=confirm]")
        page.wait_for_function("() => document.getElementById('moderated').textContent.includes('confirmed')",
                               timeout=WAIT_MS)
        page.wait_for_function(f"() => !document.querySelector('[data-part=pool-map] circle[data-id=\"{drawing}\"]')",
                               timeout=WAIT_MS)
        page.screenshot(path=str(Path("/tmp") / "learn-page.png"), full_page=True)
        assert errors == []
    finally:
        context.close()
