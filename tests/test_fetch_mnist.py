"""`python -m model_store fetch-mnist` against a loopback HTTP server; nothing leaves 127.0.0.1."""

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_store.fetch import FetchError, fetch_mnist

FILES = {"a.gz": b"first fixture" * 100, "b.gz": b"second fixture" * 50}
CHECKSUMS = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


class FixtureHandler(http.server.BaseHTTPRequestHandler):
    """Serves FILES; ``/cut/…`` promises the full length but sends half, then hangs up."""

    def do_GET(self) -> None:
        cut = self.path.startswith("/cut/")
        data = FILES.get(self.path.removeprefix("/cut").lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if cut else data)

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def base_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FixtureHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_good_files_are_downloaded_and_verified(tmp_path: Path, base_url: str) -> None:
    paths = fetch_mnist(tmp_path, base_url, timeout_s=5, checksums=CHECKSUMS)
    assert [p.read_bytes() for p in paths] == list(FILES.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)


def test_bad_checksum_fails_and_leaves_nothing(tmp_path: Path, base_url: str) -> None:
    wrong = {**CHECKSUMS, "b.gz": "0" * 64}
    with pytest.raises(FetchError, match=r"b\.gz: SHA-256 .* does not match"):
        fetch_mnist(tmp_path, base_url, timeout_s=5, checksums=wrong)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz"]


def test_interrupted_transfer_fails_and_leaves_nothing(tmp_path: Path, base_url: str) -> None:
    with pytest.raises(FetchError, match=r"a\.gz: (transfer interrupted|download failed)"):
        fetch_mnist(tmp_path, base_url + "cut/", timeout_s=5, checksums=CHECKSUMS)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_fails_with_the_url(tmp_path: Path, base_url: str) -> None:
    with pytest.raises(FetchError, match=r"c\.gz: download failed .*404"):
        fetch_mnist(tmp_path, base_url, timeout_s=5, checksums={"c.gz": "0" * 64})
    assert list(tmp_path.iterdir()) == []
