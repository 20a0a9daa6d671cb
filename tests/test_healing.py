"""Self-healing (server.healing): the red-spell rule, and the supervisor's watch that ends a replica red too long.

The process rule (no engine thread left: the process ends itself and is replaced) is tested end to end in
``test_server_processes.py`` and ``test_server_failures.py``.
"""

import subprocess
import threading
import time
from pathlib import Path

import orjson

from server.__main__ import watch_replica
from server.healing import RedSpell
from server.replica import HEARTBEAT_S, Replica


def test_a_red_spell_ends_the_bound_after_it_began_and_any_green_verdict_restarts_it() -> None:
    spell = RedSpell(30.0)
    assert not spell.observe(False, 100.0)
    assert not spell.observe(False, 129.9)
    assert not spell.observe(True, 130.0)  # green once: the spell is over
    assert not spell.observe(False, 131.0)
    assert not spell.observe(False, 160.9)
    assert spell.observe(False, 161.0)


def write_status(directory: Path, pid: int, healthy: bool) -> None:
    status = {"pid": pid, "ready": True, "healthy": healthy, "reason": "test", "at": time.time()}
    (directory / f"status-{pid}.json").write_bytes(orjson.dumps(status))


def test_the_supervisors_watch_stops_a_replica_whose_health_stays_red_past_the_bound(tmp_path: Path) -> None:
    bound_s = 2.0
    # A live process of the replica (its pid must exist) that says it cannot compute frames.
    process = subprocess.Popen(["sleep", "60"])
    try:
        write_status(tmp_path, process.pid, healthy=True)
        stop, unhealthy = threading.Event(), threading.Event()
        watch = threading.Thread(target=watch_replica, args=(Replica(tmp_path, 1), bound_s, stop, unhealthy))
        watch.start()
        time.sleep(bound_s + HEARTBEAT_S)
        assert not stop.is_set()  # green: the replica runs on
        write_status(tmp_path, process.pid, healthy=False)
        turned_red = time.monotonic()
        assert stop.wait(bound_s + 3 * HEARTBEAT_S), "the replica was not stopped"
        assert time.monotonic() - turned_red >= bound_s - HEARTBEAT_S
        assert unhealthy.is_set()
        watch.join(timeout=5)
    finally:
        process.kill()
        process.wait()
