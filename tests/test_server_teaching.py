"""Visitors teach (docs/protocol.md, "teach" and "forget"): a real server, real WebSocket clients, real SQLite.

Each answer is checked against the database file itself, read by another connection (as another process
would): ``taught`` means the row is committed.
"""

import asyncio
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from model_store.strokes import Stroke
from server.protocol import ProtocolError, decode_message
from server.teaching.database import SQLITE_FILE
from server.teaching.drawings import token_digest
from support import Visitor, running_app, server_process


def rows(data_dir: Path) -> list[tuple[Any, ...]]:
    """Every stored drawing as ``(id, label, prediction, model, status, strokes)``, read by a new connection."""
    with sqlite3.connect(data_dir / SQLITE_FILE) as connection:
        return connection.execute("SELECT id, label, prediction, model, status, strokes, delete_token_sha256 "
                                  "FROM drawings ORDER BY id").fetchall()


async def teach(visitor: Visitor, label: Any, consent: Any = True) -> dict[str, Any]:
    """Send ``teach`` and return the answer (``taught`` or ``error``), skipping frames."""
    await visitor.send("teach", label=label, consent=consent)
    async with asyncio.timeout(10):
        while (message := await visitor.recv())["type"] not in ("taught", "error"):
            pass
    return message


async def forget(visitor: Visitor, token: Any, seq: bool = True) -> dict[str, Any]:
    """Send ``forget`` (with a ``seq`` unless told) and return the answer (``forgotten`` or ``error``)."""
    if seq:
        await visitor.send("forget", delete_token=token)
    else:
        await visitor.send_raw(orjson.dumps({"type": "forget", "delete_token": token}).decode())
    async with asyncio.timeout(10):
        while (message := await visitor.recv())["type"] not in ("forgotten", "error"):
            pass
    return message


async def test_teach_stores_the_drawing_and_forget_deletes_it(tmp_path: Path,
                                                              golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(data_dir=tmp_path) as url, Visitor.connect(url) as visitor:
        seq = await visitor.draw(golden_digits[7])
        frame = await visitor.frame_for(seq)
        taught = await teach(visitor, 7)
        assert set(taught) == {"type", "id", "delete_token"} and taught["type"] == "taught"
        stored = rows(tmp_path)
        assert [row[:5] for row in stored] == [(taught["id"], 7, frame["prediction"], "default", "proposed")]
        assert orjson.loads(stored[0][5]) == [[list(point) for point in stroke] for stroke in golden_digits[7]]
        assert stored[0][6] == token_digest(taught["delete_token"])
        assert await forget(visitor, taught["delete_token"]) == {"type": "forgotten", "id": taught["id"]}
        assert rows(tmp_path) == []
        again = await forget(visitor, taught["delete_token"], seq=False)
        assert (again["type"], again["code"], again["seq"]) == ("error", "unknown_token", None)


async def test_refusals_store_nothing(tmp_path: Path, golden_digits: dict[int, list[Stroke]]) -> None:
    """Missing consent, an empty pad and bad labels (SQL-looking ones included) are refused, each with its code."""
    async with running_app(data_dir=tmp_path) as url, Visitor.connect(url) as visitor:
        empty = await teach(visitor, 3)
        assert (empty["code"], empty["seq"]) == ("empty_drawing", visitor.seq)
        await visitor.frame_for(await visitor.draw(golden_digits[3]))
        for consent in (None, False, "true", 1):
            assert (await teach(visitor, 3, consent=consent))["code"] == "consent_required", consent
        for label in (10, -1, "3", 3.0, True, None, "3); DROP TABLE drawings; --", "' OR 1=1 --"):
            refused = await teach(visitor, label)
            assert refused["code"] == "bad_label", label
            assert "DROP" not in refused["message"] and "OR 1" not in refused["message"]  # never echoed
        assert rows(tmp_path) == []
        taught = await teach(visitor, 3)  # the table is still there and takes a good one
        assert [row[:2] for row in rows(tmp_path)] == [(taught["id"], 3)]


async def test_a_token_of_another_visitor_or_a_forged_one_deletes_nothing(
        tmp_path: Path, golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(data_dir=tmp_path) as url, \
            Visitor.connect(url) as alice, Visitor.connect(url) as mallory:
        for visitor, digit in ((alice, 1), (mallory, 2)):
            await visitor.frame_for(await visitor.draw(golden_digits[digit]))
        alices, mallorys = await teach(alice, 1), await teach(mallory, 2)
        token = alices["delete_token"]
        for forged in (token[:-1], token + "x", token.upper() if token.upper() != token else token.lower(),
                       "' OR '1'='1", "%", "*", "x" * 129):
            answer = await forget(mallory, forged)
            expected = "invalid_message" if len(forged) > 128 else "unknown_token"
            assert (answer["type"], answer["code"]) == ("error", expected), forged
        assert [row[0] for row in rows(tmp_path)] == [alices["id"], mallorys["id"]]
        # Mallory's own token deletes Mallory's drawing only.
        assert (await forget(mallory, mallorys["delete_token"]))["id"] == mallorys["id"]
        assert [row[0] for row in rows(tmp_path)] == [alices["id"]]


async def test_teaching_is_rate_limited_per_visitor(tmp_path: Path, golden_digits: dict[int, list[Stroke]]) -> None:
    async with running_app(data_dir=tmp_path, max_teach_per_minute=3) as url, Visitor.connect(url) as visitor:
        await visitor.frame_for(await visitor.draw(golden_digits[4]))
        answers = [await teach(visitor, 4) for _ in range(4)]
        assert [answer["type"] for answer in answers] == ["taught"] * 3 + ["error"]
        assert answers[3]["code"] == "rate_limited"
        assert len(rows(tmp_path)) == 3


async def test_fifty_visitors_teaching_at_once_lose_nothing(tmp_path: Path,
                                                          golden_digits: dict[int, list[Stroke]]) -> None:
    """Two server processes writing one SQLite file: every acknowledged drawing is stored, and only those."""
    env = {"DATA_DIR": str(tmp_path), "PROCESSES": "2", "MAX_TEACH_PER_MINUTE": "60"}
    with server_process(env) as server:
        async def one(index: int) -> list[int]:
            async with Visitor.connect(server.url) as visitor:
                digit = index % 10
                await visitor.frame_for(await visitor.draw(golden_digits[digit]))
                answers = [await teach(visitor, digit) for _ in range(2)]
                assert [answer["type"] for answer in answers] == ["taught", "taught"], answers
                return [answer["id"] for answer in answers]

        acknowledged = [drawing for ids in await asyncio.gather(*(one(i) for i in range(50))) for drawing in ids]
    stored = rows(tmp_path)
    assert len(acknowledged) == 100
    assert sorted(acknowledged) == [row[0] for row in stored]
    assert sorted(row[1] for row in stored) == sorted([i % 10 for i in range(50)] * 2)


async def test_an_acknowledged_drawing_survives_kill_9(tmp_path: Path, golden_digits: dict[int, list[Stroke]]) -> None:
    """SIGKILL the server right after the last ``taught``: every acknowledged row is in the file afterwards."""
    with server_process({"DATA_DIR": str(tmp_path), "MAX_TEACH_PER_MINUTE": "100"}) as server:
        acknowledged = []
        async with Visitor.connect(server.url) as visitor:
            for digit in range(10):
                await visitor.send("clear")
                await visitor.frame_for(await visitor.draw(golden_digits[digit]))
                acknowledged.append((await teach(visitor, digit))["id"])
            os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        assert server.process.returncode == -signal.SIGKILL
    assert [row[:2] for row in rows(tmp_path)] == list(zip(acknowledged, range(10)))


@pytest.mark.parametrize("text, code", [
    ('{"type": "teach", "seq": 1, "label": 3}', "consent_required"),
    ('{"type": "teach", "seq": 1, "label": 3, "consent": false}', "consent_required"),
    ('{"type": "teach", "seq": 1, "label": 12, "consent": true}', "bad_label"),
    ('{"type": "teach", "label": 3, "consent": true}', "invalid_message"),
    ('{"type": "forget"}', "invalid_message"),
    ('{"type": "forget", "delete_token": ""}', "invalid_message"),
    ('{"type": "forget", "delete_token": ["a"]}', "invalid_message"),
])
def test_decode_refuses(text: str, code: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        decode_message(text)
    assert refused.value.code == code
