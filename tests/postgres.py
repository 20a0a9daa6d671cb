"""A throwaway PostgreSQL server for tests: Debian's binaries, run as the ``postgres`` user on 127.0.0.1.

:func:`postgres_server` yields a :class:`Postgres` once it accepts connections and removes it afterwards;
tests that need one skip, saying why, where the binaries or root (``initdb`` runs as ``postgres``) are
missing.
"""

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))


@dataclass
class Postgres:
    """``url``: a SQLAlchemy asyncpg URL of its ``postgres`` database (trust auth, loopback only)."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"),
                        "-o", options, "-l", str(self.directory / "log"), "-w", "-t", "60", *args],
                       check=True, capture_output=True, timeout=90)

    def crash_and_restart(self) -> None:
        """Stop at once, as a crash would (``-m immediate``: no checkpoint; recovery replays the WAL), then start."""
        self.ctl("stop", "-m", "immediate")
        self.ctl("start")

    def query(self, sql: str) -> list[list[str]]:
        """Rows of ``sql`` through psql, each a list of text fields."""
        done = subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "psql"), "-h", "127.0.0.1",
                               "-p", str(self.port), "-At", "-F", "\t", "-c", sql],
                              check=True, capture_output=True, text=True, timeout=30)
        return [line.split("\t") for line in done.stdout.splitlines()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL binaries missing: apt-get install postgresql")
    if os.geteuid() != 0:
        pytest.skip("initdb must run as the postgres user: these tests need root to switch to it")
    directory = Path(tempfile.mkdtemp(prefix="xai-pg-", dir="/tmp"))
    directory.chmod(0o755)
    shutil.chown(directory, "postgres")
    server = Postgres(directory, free_port())
    subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(directory / "data"),
                    "-A", "trust", "-U", "postgres"], check=True, capture_output=True, timeout=120)
    server.ctl("start")
    try:
        yield server
    finally:
        try:
            server.ctl("stop", "-m", "fast")
        finally:
            shutil.rmtree(directory, ignore_errors=True)
