"""Fixtures shared by the suite; the helpers behind them are in ``tests/support.py``.

Test modules import helpers with ``from support import running_app, server_process, Visitor, decode_array``
(pytest puts this directory on ``sys.path``).
"""

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from model_store.strokes import Stroke, load_golden_digits
from support import running_app

CHROMIUM = Path("/usr/bin/chromium")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (minutes each)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip, saying why: ``slow`` tests without ``--slow``; ``browser`` tests without Debian's chromium
    (instead of erroring).  One hook: a second definition would replace the first (ruff F811 found one)."""
    skip_slow = pytest.mark.skip(reason="slow: over the whole official test set; run with --slow (make test-slow)")
    skip_browser = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium (make test does, as root)")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--slow"):
            item.add_marker(skip_slow)
        if "browser" in item.keywords and not CHROMIUM.exists():
            item.add_marker(skip_browser)


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every server of the session (in-process or child) keeps its teaching database here, not in ./data."""
    path = tmp_path_factory.mktemp("data")
    previous = os.environ.get("DATA_DIR")
    os.environ["DATA_DIR"] = str(path)
    yield path
    if previous is None:
        del os.environ["DATA_DIR"]
    else:
        os.environ["DATA_DIR"] = previous


@pytest.fixture(scope="session")
def golden_digits() -> dict[int, list[Stroke]]:
    """Class → strokes of one golden digit per class (``model_store/golden_digits.json``)."""
    return load_golden_digits()


@pytest.fixture
async def app_url() -> AsyncIterator[str]:
    """``http://127.0.0.1:PORT`` of the app with default settings, served for one test."""
    async with running_app() as url:
        yield url
