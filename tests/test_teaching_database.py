"""The teaching database: migrations (once, safely under concurrent starts), WAL, store and forget."""

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from server.teaching.database import SQLITE_FILE, database_url, open_engine
from server.teaching.drawings import DrawingStore, Reading, token_digest
from server.teaching.migrate import current_revision, head_revision, prepare

ROOT = Path(__file__).resolve().parent.parent
READING = Reading("default", "f" * 64, 3, tuple([0.1] * 10))
STROKES = (((0.1, 0.2), (0.3, 0.4)), ((0.5, 0.5),))


def test_migrate_command_is_idempotent_and_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "server", "migrate"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().endswith(f"is at schema revision {head_revision()}")
    with sqlite3.connect(tmp_path / SQLITE_FILE) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [(head_revision(),)]


def test_concurrent_migrations_of_one_sqlite_file_all_succeed(tmp_path: Path) -> None:
    """Four processes migrate a fresh file at once (as server processes starting together): the lock lets one
    create the tables and the others find them (without the lock this failed in 1 run of 2 here: two
    processes both created the tables)."""
    env = {"DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    processes = [subprocess.Popen([sys.executable, "-m", "server", "migrate"], cwd=ROOT, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, [err for _, err in results]
    assert current_revision(database_url("", tmp_path)) == head_revision()


def test_prepare_refuses_an_unmigrated_database_it_may_not_migrate(tmp_path: Path) -> None:
    """Only embedded SQLite is migrated at start-up; any other database must already be current."""
    from server.teaching import migrate

    url = database_url("", tmp_path)
    original = migrate.is_sqlite
    migrate.is_sqlite = lambda _url: False  # as if it were PostgreSQL: the check reads the same alembic table
    try:
        with pytest.raises(migrate.SchemaOutOfDate, match="run `python -m server migrate`"):
            prepare(url)
    finally:
        migrate.is_sqlite = original


async def test_store_commits_and_forgets_by_token_only(tmp_path: Path) -> None:
    url = database_url("", tmp_path)
    await asyncio.to_thread(prepare, url)
    engine = open_engine(url)
    store = DrawingStore(engine)
    try:
        first = await store.add(STROKES, 7, READING)
        second = await store.add(STROKES, 1, READING)
        # Committed: another connection (another process would use the same) sees both rows at once.
        with sqlite3.connect(tmp_path / SQLITE_FILE) as connection:
            rows = connection.execute("SELECT id, label, prediction, status, delete_token_sha256 FROM drawings "
                                      "ORDER BY id").fetchall()
        assert rows == [(first.id, 7, 3, "proposed", token_digest(first.delete_token)),
                        (second.id, 1, 3, "proposed", token_digest(second.delete_token))]
        assert first.delete_token not in {row[4] for row in rows}  # only its hash is stored
        assert await store.forget("' OR '1'='1") is None
        assert await store.forget(first.delete_token[:-1]) is None
        assert await store.count() == 2
        assert await store.forget(first.delete_token) == first.id
        assert await store.forget(first.delete_token) is None
        assert await store.count() == 1
        kept = await store.get(second.id)
        assert kept is not None and kept.strokes == [[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.5]]]
    finally:
        await engine.dispose()


def test_the_database_url_can_come_from_a_secret_file(tmp_path: Path) -> None:
    """DATABASE_URL_FILE (a mounted secret) names the database when DATABASE_URL is empty."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'from-secret.sqlite3'}"
    secret = tmp_path / "url"
    secret.write_text(url + "\n")
    done = subprocess.run([sys.executable, "-m", "server", "migrate"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"DATABASE_URL_FILE": str(secret), "DATA_DIR": str(tmp_path / "unused"),
                                           "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"database {url} is at schema revision")
    assert (tmp_path / "from-secret.sqlite3").exists() and not (tmp_path / "unused" / SQLITE_FILE).exists()
