"""The curator's page /learn: every route closed without a login, login with CSRF and a failed-login limit,
the pool with its query strategies, contrast explanations and moderation.  A real server process, real HTTP,
the real SQLite file."""

import asyncio
import http.client
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
import pytest

from model_store.strokes import load_golden_digits
from server.curator import strategies
from server.teaching.database import database_url, open_engine
from server.teaching.drawings import DrawingStore, Reading
from support import Visitor, server_process

PASSWORD = "correct horse battery staple"
ROUTES = [("GET", "/learn/api/pool"), ("GET", "/learn/api/rounds"), ("GET", "/learn/api/drawings/1"), ("POST", "/learn/api/drawings/1"),
          ("POST", "/learn/logout")]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """HTTP/1.1 to the server with one cookie jar entry (the session cookie); never follows redirects."""

    url: str
    cookie: str | None = None
    sent: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                cookie: bool = True) -> Response:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        all_headers = dict(headers or {})
        if cookie and self.cookie:
            all_headers["cookie"] = self.cookie
        connection.request(method, path, body=body, headers=all_headers)
        answer = connection.getresponse()
        result = Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        connection.close()
        set_cookie = result.headers.get("set-cookie")
        if set_cookie:
            self.cookie = set_cookie.split(";", 1)[0]
        return result

    def form(self, path: str, fields: dict[str, str]) -> Response:
        return self.request("POST", path, urlencode(fields).encode(),
                            {"content-type": "application/x-www-form-urlencoded"})

    def csrf_from_login(self) -> str:
        page = self.request("GET", "/learn/login")
        assert page.status == 200
        found = re.search(rb'name="csrf" value="([^"]+)"', page.body)
        assert found is not None
        return found.group(1).decode()

    def log_in(self, password: str = PASSWORD) -> Response:
        return self.form("/learn/login", {"csrf": self.csrf_from_login(), "password": password})


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[int]]]:
    """A server with a curator password and 14 taught drawings: the golden digits labelled right, four
    fragments (one stroke of a digit) whose reading is unsure."""
    data_dir = tmp_path_factory.mktemp("curated")
    env = {"DATA_DIR": str(data_dir), "CURATOR_PASSWORD": PASSWORD, "CURATOR_MAX_FAILED_LOGINS": "1000"}
    with server_process(env) as server:
        golden = load_golden_digits()
        drawings = [(tuple(tuple(map(tuple, s)) for s in golden[d]), d) for d in range(10)]
        drawings += [((tuple(map(tuple, golden[d][0][: max(2, len(golden[d][0]) // 2)])),), d) for d in (4, 5, 7, 8)]
        yield server.url, data_dir, asyncio.run(seed(data_dir, drawings))


async def seed(data_dir: Path, drawings: list[tuple[Any, int]]) -> list[int]:
    engine = open_engine(database_url("", data_dir))
    try:
        store = DrawingStore(engine)
        reading = Reading("default", "seed", 0, tuple([0.1] * 10))
        return [(await store.add(strokes, label, reading)).id for strokes, label in drawings]
    finally:
        await engine.dispose()


def test_every_learn_route_is_closed_without_a_login(curated: tuple[str, Path, list[int]]) -> None:
    url, _, ids = curated
    anonymous = Client(url)
    page = anonymous.request("GET", "/learn")
    assert (page.status, page.headers["location"]) == (303, "/learn/login")
    for method, path in ROUTES:
        assert anonymous.request(method, path).status == 401, (method, path)
    # A session from the login form (not logged in) opens nothing either; nor does a forged cookie.
    anonymous.csrf_from_login()
    for method, path in ROUTES:
        assert anonymous.request(method, path).status == 401, (method, path)
    curator = Client(url)
    assert curator.log_in().status == 303
    assert curator.cookie is not None
    name, value = curator.cookie.split("=", 1)
    forged = Client(url, cookie=f"{name}={value[:-2]}{'AA' if not value.endswith('AA') else 'BB'}")
    for method, path in ROUTES:
        assert forged.request(method, path).status == 401, (method, path)
    assert forged.request("GET", "/learn").status == 303


def test_login_needs_the_form_s_csrf_token_and_the_password(curated: tuple[str, Path, list[int]]) -> None:
    url, _, ids = curated
    client = Client(url)
    client.csrf_from_login()
    assert client.form("/learn/login", {"password": PASSWORD}).status == 403  # no token
    assert client.form("/learn/login", {"csrf": "forged", "password": PASSWORD}).status == 403
    other = Client(url)
    assert client.form("/learn/login", {"csrf": other.csrf_from_login(), "password": PASSWORD}).status == 403
    assert client.form("/learn/login", {"csrf": client.csrf_from_login(), "password": "wrong"}).status == 401
    assert client.form("/learn/login", {"csrf": client.csrf_from_login(), "password": PASSWORD + " "}).status == 401
    assert client.request("GET", "/learn/api/pool").status == 401
    logged_in = client.log_in()
    assert (logged_in.status, logged_in.headers["location"]) == (303, "/learn")
    assert "HttpOnly" in logged_in.headers["set-cookie"] and "SameSite=strict" in logged_in.headers["set-cookie"]
    page = client.request("GET", "/learn")
    assert page.status == 200
    token = re.search(rb'name="csrf-token" content="([^"]+)"', page.body).group(1).decode()
    moderate = json.dumps({"action": "confirm"}).encode()
    path = f"/learn/api/drawings/{ids[0]}"
    headers = {"content-type": "application/json"}
    assert client.request("POST", path, moderate, headers).status == 403  # no token
    assert client.request("POST", path, moderate, {**headers, "x-csrf-token": "forged"}).status == 403
    second = Client(url)
    second.log_in()
    second_token = re.search(rb'name="csrf-token" content="([^"]+)"', second.request("GET", "/learn").body).group(1)
    assert client.request("POST", path, moderate, {**headers, "x-csrf-token": second_token.decode()}).status == 403
    assert client.request("POST", path, moderate, {**headers, "x-csrf-token": token}).status == 200
    # Logging out needs the token too, then the cookie is gone.
    assert client.form("/learn/logout", {}).status == 403
    out = client.form("/learn/logout", {"csrf": token})
    assert (out.status, out.headers["location"]) == (303, "/learn/login")
    assert client.request("GET", "/learn/api/pool").status == 401


def test_repeated_failed_logins_get_429(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path), "CURATOR_PASSWORD": PASSWORD, "CURATOR_MAX_FAILED_LOGINS": "3"}
    with server_process(env) as server:
        client = Client(server.url)
        assert client.form("/learn/login", {"password": "x"}).status == 403  # a bad form counts
        assert client.log_in("wrong").status == 401
        assert client.log_in("also wrong").status == 401
        locked = client.log_in()  # the right password, too late
        assert locked.status == 429 and int(locked.headers["retry-after"]) > 0
        assert client.request("GET", "/learn/api/pool").status == 401


def test_the_pool_its_strategies_and_a_contrast_explanation(curated: tuple[str, Path, list[int]]) -> None:
    url, _, ids = curated
    client = Client(url)
    client.log_in()
    answers = {name: client.request("GET", f"/learn/api/pool?strategy={name}&n=4").json()
               for name in strategies.STRATEGIES}
    pool = answers["least_confidence"]["pool"]
    pool_ids = [item["id"] for item in pool]
    assert set(pool_ids) <= set(ids) and len(pool_ids) >= 10
    probabilities = np.array([item["probabilities"] for item in pool])
    assert [item["prediction"] for item in pool] == probabilities.argmax(axis=1).tolist()
    for name, answer in answers.items():
        assert len(answer["proposed"]) == 4 and len(set(answer["proposed"])) == 4, name
        assert set(answer["proposed"]) <= set(pool_ids), name
        assert [point["id"] for point in answer["map"]] == pool_ids
    # The ranking strategies rank by their own measure (ties broken by order).
    unsure = sorted(pool, key=lambda item: -item["uncertainty"]["least_confidence"])[:4]
    assert answers["least_confidence"]["proposed"] == [item["id"] for item in unsure]
    narrow = sorted(pool, key=lambda item: item["uncertainty"]["margin"])[:4]
    assert answers["margin"]["proposed"] == [item["id"] for item in narrow]
    assert client.request("GET", "/learn/api/pool?strategy=drop_table").status == 400
    assert client.request("GET", "/learn/api/pool?n=0").status == 400

    target = answers["margin"]["proposed"][0]
    detail = client.request("GET", f"/learn/api/drawings/{target}").json()
    contrast = detail["contrast"]
    first, second = np.argsort(-np.array(detail["probabilities"]))[:2]
    assert (contrast["class"], contrast["versus"]) == (int(first), int(second))
    heatmap = np.array(contrast["heatmap"])
    assert heatmap.shape == (28, 28) and np.abs(heatmap).max() > 0
    assert all(n["share"] > 0 for n in contrast["toward"]) and all(n["share"] < 0 for n in contrast["against"])
    assert client.request("GET", "/learn/api/drawings/999999").status == 404
    assert client.request("GET", "/learn/api/drawings/1%20OR%201=1").status == 404


def test_moderation_takes_drawings_out_of_the_pool(curated: tuple[str, Path, list[int]]) -> None:
    url, _, ids = curated
    client = Client(url)
    client.log_in()
    token = re.search(rb'name="csrf-token" content="([^"]+)"', client.request("GET", "/learn").body).group(1).decode()
    headers = {"content-type": "application/json", "x-csrf-token": token}

    def moderate(drawing: int, body: dict[str, Any]) -> Response:
        return client.request("POST", f"/learn/api/drawings/{drawing}", json.dumps(body).encode(), headers)

    before = client.request("GET", "/learn/api/pool?n=1").json()
    waiting = [item["id"] for item in before["pool"]]
    corrected = moderate(waiting[0], {"action": "correct", "label": 3}).json()
    assert (corrected["status"], corrected["curated_label"]) == ("corrected", 3)
    assert moderate(waiting[1], {"action": "reject"}).json()["status"] == "rejected"
    assert moderate(waiting[2], {"action": "correct"}).status == 400  # correct needs a label
    assert moderate(waiting[2], {"action": "correct", "label": "3; DROP TABLE drawings"}).status == 400
    assert moderate(waiting[2], {"action": "delete"}).status == 400
    after = client.request("GET", "/learn/api/pool?n=1").json()
    assert [item["id"] for item in after["pool"]] == waiting[2:]
    assert after["labelled"] == before["labelled"] + 1  # rejected drawings are not labelled


async def test_nothing_of_learn_is_reachable_from_the_websocket(curated: tuple[str, Path, list[int]]) -> None:
    url, _, _ = curated
    async with Visitor.connect(url) as visitor:
        for kind in ("moderate", "learn", "login"):
            await visitor.send(kind, action="confirm", id=1)
            refused = await visitor.recv_type("error")
            assert refused["code"] == "unknown_type"


def test_strategies_follow_their_definitions() -> None:
    p = np.array([[0.9, 0.1] + [0] * 8, [0.45, 0.45, 0.1] + [0] * 7, [0.4, 0.35, 0.25] + [0] * 7])
    assert strategies.propose("least_confidence", p, p, np.zeros((0, 10)), 2) == [2, 1]  # 1 - max p: .6 > .55
    assert strategies.propose("margin", p, p, np.zeros((0, 10)), 2) == [1, 2]  # p1 - p2: 0 < .05
    assert strategies.propose("entropy", p, p, np.zeros((0, 10)), 1) == [2]
    # Three far-apart blobs: k-means-closest takes each blob's centre, k-means-uncertain each blob's least sure.
    rng = np.random.default_rng(0)
    blobs = np.concatenate([rng.normal(centre, 0.1, (10, 2)) for centre in (0.0, 10.0, 20.0)])
    sure = np.tile([0.95, 0.05] + [0] * 8, (30, 1))
    sure[[3, 13, 23]] = [0.4, 0.35, 0.25] + [0] * 7
    central = [10 * b + int(np.argmin(np.linalg.norm(blobs[10 * b:10 * b + 10] - blobs[10 * b:10 * b + 10].mean(axis=0),
                                                      axis=1))) for b in range(3)]
    assert sorted(strategies.propose("kmeans_closest", sure, blobs, np.zeros((0, 2)), 3)) == central
    assert sorted(strategies.propose("kmeans_uncertain", sure, blobs, np.zeros((0, 2)), 3)) == [3, 13, 23]
    # Ranked batch (modAL): with blob 0 labelled, the first pick is far from it; each next one spreads out.
    picks = strategies.propose("ranked_batch", np.tile(sure[0], (30, 1)), blobs, blobs[:10], 2)
    assert {pick // 10 for pick in picks} == {1, 2}
    cold = strategies.propose("ranked_batch", np.tile(sure[0], (30, 1)), blobs, np.zeros((0, 2)), 1)
    assert cold[0] // 10 == 1  # the most central blob first


def store_with_a_round(directory: Path) -> tuple[Path, dict[str, Any], list[dict[str, Any]], str]:
    """A copy of the store whose default model went through a round (same weights, so the server's checks pass):
    the store, the round's evaluations and maps, the shipped sha256."""
    import shutil

    from model_store.manifest import store_dir_from_env

    store = directory / "store"
    shutil.copytree(store_dir_from_env(), store)
    manifest = json.loads((store / "manifest.json").read_text())
    shipped = manifest["models"]["default"]
    measured = {"embedded_validation": {"n": 500, "before": 0.98, "after": 0.982, "change": 0.002, "noise": 0.006,
                                        "blocked": False, "per_class_before": [0.98] * 10,
                                        "per_class_after": [0.982] * 10, "confusion_before": [[50] * 10] * 10,
                                        "confusion_after": [[50] * 10] * 10}}
    heatmap = {"scale": 0.01, "values": [0] * 783 + [127]}
    maps = [{"id": 2, "label": 4, "old": {"prediction": 9, "p_label": 0.3, "heatmap": heatmap},
             "new": {"prediction": 4, "p_label": 0.8, "heatmap": heatmap}}]
    manifest["models"]["default"] = {**shipped, "round": 1, "parent": shipped,
                                     "provenance": {"drawings": [1, 2, 3], "evaluations": measured, "maps": maps}}
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store, measured, maps, shipped["sha256"]


def test_the_rounds_of_the_serving_model(tmp_path: Path) -> None:
    """A store whose default model went through a round: /learn/api/rounds lists both versions, newest first,
    with what the round measured and its maps."""
    store, measured, maps, shipped = store_with_a_round(tmp_path)
    env = {"DATA_DIR": str(tmp_path / "data"), "CURATOR_PASSWORD": PASSWORD, "MODEL_STORE_DIR": str(store)}
    with server_process(env) as server:
        client = Client(server.url)
        assert client.request("GET", "/learn/api/rounds").status == 401
        client.log_in()
        answer = client.request("GET", "/learn/api/rounds").json()
    assert answer["model"] == "default" and answer["serving_sha256"] == shipped
    assert [(r["round"], r["drawings"]) for r in answer["rounds"]] == [(1, 3), (0, 0)]
    assert answer["rounds"][0]["evaluations"] == measured and answer["rounds"][1]["evaluations"] == {}
    assert answer["rounds"][0]["maps"] == maps and answer["rounds"][1]["maps"] == []


def test_the_curator_starts_a_round_in_a_worker_process(tmp_path: Path) -> None:
    """POST /learn/api/rounds runs `python -m model_store learn` beside the server: one at a time, CSRF needed,
    its result reported by GET, and the promoted version served by the same process afterwards."""
    import shutil
    import time

    from model_store.manifest import store_dir_from_env

    store, data_dir = tmp_path / "store", tmp_path / "data"
    shutil.copytree(store_dir_from_env(), store)
    env = {"DATA_DIR": str(data_dir), "CURATOR_PASSWORD": PASSWORD, "MODEL_STORE_DIR": str(store),
           "VERSION_POLL_S": "1"}
    with server_process(env) as server:
        golden = load_golden_digits()
        asyncio.run(seed(data_dir, [(tuple(tuple(map(tuple, s)) for s in golden[d]), d) for d in range(10)] * 3))
        client = Client(server.url)
        client.log_in()
        token = re.search(rb'name="csrf-token" content="([^"]+)"', client.request("GET", "/learn").body).group(1)
        body = json.dumps({"accept_proposed": True, "epochs": 2}).encode()
        assert client.request("POST", "/learn/api/rounds", body, {"content-type": "application/json"}).status == 403
        headers = {"content-type": "application/json", "x-csrf-token": token.decode()}
        assert client.request("POST", "/learn/api/rounds", b'{"epochs": 0}', headers).status == 400
        assert client.request("POST", "/learn/api/rounds", body, headers).status == 202
        assert client.request("POST", "/learn/api/rounds", body, headers).status == 409
        deadline = time.monotonic() + 240
        while (state := client.request("GET", "/learn/api/rounds").json())["running"]:
            assert time.monotonic() < deadline
            time.sleep(1)
        last = state["last"]
        assert "error" not in last, last
        assert last["data"]["visitor_train"] + last["data"]["visitor_held_out"] == 30
        # The official test set is evaluated too where MNIST_DIR is set (as in CI).
        official = {"official_test"} if os.environ.get("MNIST_DIR") else set()
        assert set(last["evaluations"]) == {"embedded_validation", "visitor_held_out"} | official
        if last["promoted"]:
            sha = last["version"]["sha256"]
            while client.request("GET", "/learn/api/rounds").json()["serving_sha256"] != sha:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        else:
            assert last["blocked_by"]
