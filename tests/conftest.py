"""Fixtures shared by the suite; the helpers behind them are in ``tests/support.py``.

Test modules import helpers with ``from support import running_app, server_process, Visitor, decode_array``
(pytest puts this directory on ``sys.path``).
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from model_store.strokes import Stroke, load_golden_digits
from support import running_app

CHROMIUM = Path("/usr/bin/chromium")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without Debian's chromium, every ``browser`` test is skipped saying so (instead of erroring)."""
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium (make test does, as root)")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (minutes each)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: over the whole official test set; run with --slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def golden_digits() -> dict[int, list[Stroke]]:
    """Class → strokes of one golden digit per class (``model_store/golden_digits.json``)."""
    return load_golden_digits()


@pytest.fixture
async def app_url() -> AsyncIterator[str]:
    """``http://127.0.0.1:PORT`` of the app with default settings, served for one test."""
    async with running_app() as url:
        yield url
