"""Bring the teaching database to the newest schema: ``python -m server migrate``.

Migrations run once per deployment, not once per replica: a deployment with a
shared database (PostgreSQL) runs ``python -m server migrate`` as its own step
(a compose service, a Kubernetes Job) before the servers start, and every
server only checks at start-up that the schema is current (:func:`prepare`).
The embedded SQLite file belongs to one host, so each server process upgrades
it itself at start-up, under an exclusive ``flock`` on a file beside it: of
several processes starting together one migrates, the others wait and then
find nothing to do.
"""

import argparse
import asyncio
import fcntl
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from .database import database_url, is_sqlite, open_engine, sqlite_path

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaOutOfDate(RuntimeError):
    """The database's schema is not the newest revision and this process may not migrate it."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(url: str) -> None:
    """Upgrade the database at ``url`` to the newest revision (nothing if it is there); blocking."""
    if is_sqlite(url):
        with exclusive_lock(sqlite_path(url).with_name(sqlite_path(url).name + ".migrate-lock")):
            asyncio.run(_run(url, _upgrade))
    else:
        asyncio.run(_run(url, _upgrade))


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at (``None``: never migrated); blocking."""
    return asyncio.run(_run(url, _current))


def prepare(url: str) -> None:
    """At server start-up: upgrade an embedded SQLite file; otherwise require the newest schema.

    Raises :class:`SchemaOutOfDate` naming both revisions and the command that fixes it.
    """
    if is_sqlite(url):
        upgrade(url)
        return
    current, head = current_revision(url), head_revision()
    if current != head:
        raise SchemaOutOfDate(f"the database {_safe(url)} is at schema revision {current}, this server needs "
                              f"{head}: run `python -m server migrate` once for the deployment")


async def _run(url: str, step: Callable[[Connection], T]) -> T:
    engine = open_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(step)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _safe(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def main(argv: list[str]) -> int:
    """``python -m server migrate``: upgrade the database the settings name, print where it now is."""
    from server.settings import Settings, SettingsError

    parser = argparse.ArgumentParser(prog="python -m server migrate", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    url = database_url(settings.database_url, settings.data_dir, settings.database_url_file)
    upgrade(url)
    print(f"database {_safe(url)} is at schema revision {current_revision(url)}")
    return 0
