"""``python -m server --host H --port P --model NAME``, as outside tools start it."""

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from model_store import model_names, model_record
from model_store.store import STORE_DIR
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
            assert frame["activations"]["shape"] == [model_record(others[0])["hidden"]]


def test_a_bad_setting_stops_the_server_naming_the_variable() -> None:
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "MAX_CONNECTIONS": "none"})
    assert result.returncode == 2
    assert "MAX_CONNECTIONS" in result.stderr


def _store_without_hidden(tmp_path: Path) -> dict[str, str]:
    store = tmp_path / "store"
    shutil.copytree(STORE_DIR / "weights", store / "weights")
    manifest = json.loads((STORE_DIR / "manifest.json").read_text())
    del manifest["models"]["h16"]["hidden"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    return {"MODEL_STORE_DIR": str(store)}


def _weights_symlinked_out(tmp_path: Path) -> dict[str, str]:
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(STORE_DIR / "manifest.json", store / "manifest.json")
    shutil.copytree(STORE_DIR / "weights", tmp_path / "elsewhere")
    (store / "weights").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    return {"MODEL_STORE_DIR": str(store)}


# Each start-up failure an operator can cause, and the words its one log line must hold.
STARTUP_FAILURES: dict[str, tuple[Callable[[Path], dict[str, str]], str]] = {
    "manifest field missing": (_store_without_hidden, "model 'h16': field 'hidden' missing"),
    "weights folder symlinked": (_weights_symlinked_out, "the weights folder is a symlink"),
    "unknown model": (lambda tmp_path: {"MODEL": "nope"}, "model 'nope' is not in the store"),
}


# uvicorn's own fixed lines around a failed start-up; nothing else may be an error.
UVICORN_STARTUP_ERRORS = ("Application startup failed. Exiting.", "failed to start, stopping the parent process.")


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("failure", STARTUP_FAILURES.values(), ids=STARTUP_FAILURES.keys())
def test_a_start_up_failure_is_one_line_per_process_and_exit_status_3(
        tmp_path: Path, failure: tuple[Callable[[Path], dict[str, str]], str], processes: int) -> None:
    make_env, words = failure
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "HOST": "127.0.0.1", "PORT": "0", "PROCESSES": str(processes),
                                 **make_env(tmp_path)})
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    lines = [orjson.loads(line) for line in result.stderr.splitlines()]
    failed = [line for line in lines if line["event"] == "startup_failed"]
    assert all(words in line["error"] for line in failed), result.stderr
    # One per server process. uvicorn's supervisor pings a process with a 5 s timeout: one whose interpreter
    # takes longer to exit (torch, on a loaded machine) is killed, read as "died" and replaced, and fails again.
    assert len(failed) == 1 if processes == 1 else len(failed) >= 1, result.stderr
    others = [line["event"] for line in lines if line["level"] == "error" and line["event"] != "startup_failed"]
    assert all(line.endswith(UVICORN_STARTUP_ERRORS) for line in others), result.stderr


def test_a_port_in_use_is_one_log_line_and_exit_status_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)})
    assert result.returncode == 3
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = orjson.loads(lines[0])
    assert (line["event"], line["port"]) == ("startup_failed", port) and "in use" in line["error"]
