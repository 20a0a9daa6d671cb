"""``python -m server --host H --port P --model NAME``, as outside tools start it."""

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from model_store import model_names, model_record
from model_store.manifest import STORE_DIR
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
            if visitor.welcome["model"]["family"] == "cnn":  # a cnn's frame carries its channels, not fc1's
                assert set(frame["channels"]) == {"conv1", "conv2"}
            else:
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


def _hidden_not_matching_the_tensors(tmp_path: Path) -> dict[str, str]:
    """A manifest that passes every file check (size, hash) but whose h16 entry says 32 hidden units."""
    store = tmp_path / "store"
    shutil.copytree(STORE_DIR / "weights", store / "weights")
    manifest = json.loads((STORE_DIR / "manifest.json").read_text())
    manifest["models"]["h16"].update(hidden=32, architecture={"layers": [784, 32, 10]})
    (store / "manifest.json").write_text(json.dumps(manifest))
    return {"MODEL_STORE_DIR": str(store)}


def _start(tmp_path: Path, env: dict[str, str], processes: int) -> tuple[int, list[dict[str, Any]], str]:
    """Run ``python -m server`` until it exits; its status, its log lines (parsed) and its stderr."""
    result = subprocess.run([sys.executable, "-m", "server"], cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "HOST": "127.0.0.1", "PORT": "0", "PROCESSES": str(processes), **env})
    return result.returncode, [orjson.loads(line) for line in result.stderr.splitlines()], result.stderr


# Failures found before any server process starts, and the words of the one line that names each.
STORE_FAILURES: dict[str, tuple[Callable[[Path], dict[str, str]], str]] = {
    "manifest field missing": (_store_without_hidden, "model 'h16': field 'hidden' missing"),
    "weights folder symlinked": (_weights_symlinked_out, "the weights folder is a symlink"),
    "unknown model": (lambda tmp_path: {"MODEL": "nope"}, "unknown model 'nope'; the store holds: cnn, default, h16"),
}


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("failure", STORE_FAILURES.values(), ids=STORE_FAILURES.keys())
def test_a_broken_store_stops_the_server_with_one_line_and_exit_status_3(
        tmp_path: Path, failure: tuple[Callable[[Path], dict[str, str]], str], processes: int) -> None:
    make_env, words = failure
    status, lines, stderr = _start(tmp_path, make_env(tmp_path), processes)
    assert status == 3
    assert len(lines) == 1, stderr
    assert (lines[0]["level"], lines[0]["event"]) == ("error", "startup_failed") and words in lines[0]["error"]


# uvicorn's own fixed line after a failed lifespan; nothing else may be an error.
UVICORN_STARTUP_ERROR = "Application startup failed. Exiting."


def test_tensors_that_do_not_fit_the_manifest_stop_the_server_with_one_line_and_exit_status_3(
        tmp_path: Path) -> None:
    # Found by the server process itself (it deserialises the tensors); one process: with several,
    # uvicorn's supervisor may take a process slow to exit for hung and replace it before reading status 3.
    status, lines, stderr = _start(tmp_path, _hidden_not_matching_the_tensors(tmp_path), 1)
    assert status == 3
    assert "Traceback" not in stderr
    failed = [line for line in lines if line["event"] == "startup_failed"]
    assert len(failed) == 1 and "model 'h16': fc1.weight has shape (16, 784), expected (32, 784)" in failed[0]["error"]
    errors = [line["event"] for line in lines if line["level"] == "error" and line["event"] != "startup_failed"]
    assert errors == [UVICORN_STARTUP_ERROR], stderr


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


def test_the_supervisor_checks_the_store_without_importing_torch() -> None:
    code = ("import sys, server.__main__, model_store.manifest; "
            "model_store.manifest.verify_files(); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, "False"), result.stderr
