"""A promoted version is served without a restart (server/versions.py): new visitors get it within 30 s,
a visitor already drawing keeps the version their drawing began with until they clear the pad."""

import asyncio
import shutil
import sqlite3
import time
from pathlib import Path

import torch
from test_server_teaching import teach

from model_store.manifest import model_record, store_dir_from_env
from model_store.store import load_model
from model_store.strokes import Stroke
from model_store.versions import promote
from server.teaching.database import SQLITE_FILE
from support import Visitor, server_process

SWITCH_S = 30.0


async def prediction_of(visitor: Visitor, strokes: list[Stroke]) -> int:
    frame = await visitor.frame_for(await visitor.draw(strokes))
    return int(frame["prediction"])


async def test_a_promoted_version_reaches_new_visitors_and_old_ones_after_a_clear(
        tmp_path: Path, golden_digits: dict[int, list[Stroke]]) -> None:
    store, data_dir = tmp_path / "store", tmp_path / "data"
    shutil.copytree(store_dir_from_env(), store)
    shipped = model_record("default", store)["sha256"]
    env = {"MODEL_STORE_DIR": str(store), "DATA_DIR": str(data_dir), "VERSION_POLL_S": "2"}
    three = golden_digits[3]
    with server_process(env) as server:
        async with Visitor.connect(server.url) as early:
            assert await prediction_of(early, three) == 3
            # A version that reads everything as a 5: the switch is visible in every frame.
            model = load_model("default", store)
            with torch.no_grad():
                model.fc2.bias[5] += 100.0
            promoted = promote(model, "default", {"provenance": {"note": "test"}}, store)["sha256"]
            started = time.monotonic()
            while True:
                async with Visitor.connect(server.url) as late:
                    if await prediction_of(late, three) == 5:
                        break
                assert time.monotonic() - started < SWITCH_S, "the new version was not served within 30 s"
                await asyncio.sleep(0.5)
            switched_s = time.monotonic() - started
            # The early visitor's drawing goes on with the version it began with, and teaches with it.
            await early.send("undo")
            assert await prediction_of(early, three[-1:]) == 3
            assert (await teach(early, 3))["type"] == "taught"
            await early.send("clear")
            assert await prediction_of(early, three) == 5
            assert (await teach(early, 3))["type"] == "taught"
    with sqlite3.connect(data_dir / SQLITE_FILE) as connection:
        versions = [row[0] for row in connection.execute("SELECT model_version FROM drawings ORDER BY id")]
    assert versions == [shipped, promoted]
    assert '"event":"model_version_served"' in server.log()
    print(f"new version served to new visitors {switched_s:.1f} s after promotion (poll every 2 s)")
