"""``python -m server --host H --port P --model NAME``, as outside tools start it."""

import subprocess
import sys

import orjson
import pytest

from model_store import model_names, model_record
from support import ROOT, Visitor, fetch, server_process


async def test_command_line_options_choose_address_and_model() -> None:
    others = [name for name in model_names() if name != model_record()["name"]]
    if not others:
        pytest.skip("the store holds a single model")
    with server_process(args=("--host", "127.0.0.1", "--port", "0", "--model", others[0])) as server:
        status, body = await fetch(server.url + "/api/models")
        assert status == 200 and orjson.loads(body)["default"] == others[0]
        async with Visitor.connect(server.url) as visitor:
            assert visitor.welcome["model"]["name"] == visitor.welcome["state"]["model"] == others[0]
            frame = await visitor.frame_for(None)
            assert len(frame["activations"]) == model_record(others[0])["hidden"]


def test_a_bad_setting_stops_the_server_naming_the_variable() -> None:
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "MAX_CONNECTIONS": "none"})
    assert result.returncode == 2
    assert "MAX_CONNECTIONS" in result.stderr
