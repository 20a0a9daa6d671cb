"""The teaching database's engine: SQLite (WAL) in ``DATA_DIR`` by default, else ``DATABASE_URL``.

The SQLite file is opened in WAL mode with ``synchronous=FULL``: a commit has
reached the disk when it returns, so a drawing acknowledged to a visitor
survives ``kill -9`` of the process and a power cut (SQLite, "Write-Ahead
Logging" and "PRAGMA synchronous").  Several server processes may share one
file: SQLite serialises writers, and each waits up to ``BUSY_TIMEOUT_S`` for
the write lock instead of failing.
"""

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_FILE = "teaching.sqlite3"
BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another process's write lock


def database_url(database_url: str, data_dir: Path, url_file: Path | None = None) -> str:
    """``database_url`` if set, else the one line of ``url_file`` if given, else the SQLite file in ``data_dir``
    (the directory created if missing)."""
    if database_url:
        return database_url
    if url_file is not None:
        return url_file.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{(data_dir / SQLITE_FILE).resolve()}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path:
    """The file of a SQLite ``url`` (raises ``ValueError`` for an in-memory or non-SQLite one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        raise ValueError(f"not a SQLite file URL: {parsed.render_as_string(hide_password=True)}")
    return Path(parsed.database)


def open_engine(url: str) -> AsyncEngine:
    """An async engine for ``url``; SQLite connections in WAL mode with full sync and a busy timeout."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_pre_ping=True)
    engine = create_async_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")  # WAL's NORMAL may lose the last commits on a power cut
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cursor.close()
