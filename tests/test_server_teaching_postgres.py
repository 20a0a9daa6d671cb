"""Teaching on PostgreSQL (a real server, Debian's binaries): migrations as a separate step, the server
refusing an unmigrated database, 50 visitors at once on two processes, and drawings acknowledged before a
crash of PostgreSQL still there after its recovery."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from postgres import Postgres, postgres_server
from test_server_teaching import teach

from model_store.strokes import Stroke
from server.teaching.migrate import head_revision
from support import ROOT, Visitor, server_process


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


def test_an_unmigrated_database_stops_the_server_until_migrate_runs(postgres: Postgres) -> None:
    env = {"DATABASE_URL": postgres.url, "PROCESSES": "1", "HOST": "127.0.0.1", "PORT": "0", "PATH": "/usr/bin:/bin"}
    refused = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 3
    assert "run `python -m server migrate`" in refused.stderr
    migrated = subprocess.run([sys.executable, "-m", "server", "migrate"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    assert "postgresql+asyncpg://postgres@127.0.0.1" in migrated.stdout
    assert postgres.query("SELECT version_num FROM alembic_version") == [[head_revision()]]


async def test_teaching_survives_a_postgres_crash_and_fifty_visitors_lose_nothing(
        postgres: Postgres, golden_digits: dict[int, list[Stroke]]) -> None:
    subprocess.run([sys.executable, "-m", "server", "migrate"], cwd=ROOT, check=True, capture_output=True,
                   env={"DATABASE_URL": postgres.url, "PATH": "/usr/bin:/bin"}, timeout=120)
    env = {"DATABASE_URL": postgres.url, "PROCESSES": "2", "MAX_TEACH_PER_MINUTE": "60"}
    with server_process(env) as server:
        async def one(index: int) -> int:
            async with Visitor.connect(server.url) as visitor:
                await visitor.frame_for(await visitor.draw(golden_digits[index % 10]))
                taught = await teach(visitor, index % 10)
                assert taught["type"] == "taught", taught
                return int(taught["id"])

        acknowledged = await asyncio.gather(*(one(i) for i in range(50)))
        await asyncio.to_thread(postgres.crash_and_restart)
        stored = [int(row[0]) for row in postgres.query("SELECT id FROM drawings ORDER BY id")]
        assert stored == sorted(acknowledged)
        # The servers reconnect on their own (pool_pre_ping): a visitor teaches again without a restart.
        assert await one(7) not in acknowledged
    assert len(postgres.query("SELECT id FROM drawings")) == 51


def test_the_round_reads_postgres_too(postgres: Postgres, tmp_path: Path) -> None:
    """The 51 proposals the test above stored, accepted unreviewed, evaluated without promoting."""
    done = subprocess.run([sys.executable, "-m", "model_store", "learn", "--json", "--dry-run", "--epochs", "1",
                           "--accept-proposed", "--database-url", postgres.url], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "DATA_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["data"]["visitor_train"] + result["data"]["visitor_held_out"] == 51
    assert result["promoted"] is False and "visitor_held_out" in result["evaluations"]
