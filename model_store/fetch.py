"""Download the four official MNIST files and verify their SHA-256 checksums.

Each file is streamed into a temporary file beside its destination and only
renamed into place once its checksum matches, so a failed or interrupted
download never leaves a partial file behind.
"""

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_BASE_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
CHUNK_BYTES = 1 << 16


class FetchError(RuntimeError):
    """A download failed; the message names the file and the cause."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_file(url: str, destination: Path, sha256: str, timeout_s: float) -> None:
    """Download ``url`` to ``destination`` if its SHA-256 is ``sha256``; else raise."""
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as stream, urllib.request.urlopen(url, timeout=timeout_s) as response:
            expected_bytes = response.headers.get("Content-Length")
            received = 0
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                stream.write(chunk)
                received += len(chunk)
        if expected_bytes is not None and received != int(expected_bytes):
            raise FetchError(f"{url}: transfer interrupted after {received} of {expected_bytes} bytes")
        if digest.hexdigest() != sha256:
            raise FetchError(f"{url}: SHA-256 {digest.hexdigest()} does not match the expected {sha256}")
        os.replace(temporary, destination)
    except (OSError, urllib.error.URLError, ValueError) as error:
        os.unlink(temporary)
        raise FetchError(f"{url}: download failed ({error})") from error
    except FetchError:
        os.unlink(temporary)
        raise


def fetch_mnist(
    directory: Path,
    base_url: str = DEFAULT_BASE_URL,
    timeout_s: float = 60.0,
    checksums: dict[str, str] = SHA256,
) -> list[Path]:
    """Ensure the files of ``checksums`` (default: the four official ones) are in
    ``directory`` with those SHA-256 sums; return their paths.

    Files already present with the right checksum are kept; others are fetched
    from ``base_url``; ``timeout_s`` bounds each network operation.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, sha256 in checksums.items():
        path = directory / name
        if not (path.is_file() and file_sha256(path) == sha256):
            fetch_file(base_url.rstrip("/") + "/" + name, path, sha256, timeout_s)
        paths.append(path)
    return paths
