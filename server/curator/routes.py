"""The routes of ``/learn``: login, logout, the page, and its JSON API.  Every route but the login form
answers 401 (the API) or a redirect to the login (the page) without a curator session; POSTs also need
the session's CSRF token (a form field, or the ``X-CSRF-Token`` header of the API)."""

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import orjson
from starlette import status
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from model_store.versions import history
from server.logs import event
from server.runtime import runtime_of, services_of
from server.settings import Settings
from server.teaching.schema import Drawing, Status

from . import pages, strategies
from .auth import COOKIE, FailedLogins, Password, Session, Sessions, csrf_valid, session_key
from .pool import Pool

MAX_FORM_BYTES = 4096
MAX_POOL = 2000  # drawings the page ranks at once, oldest first
MAX_PROPOSED = 50
VERIFY_AT_ONCE = 2  # argon2 verifications in flight (64 MiB each)
MODERATION = {"confirm": Status.CONFIRMED, "correct": Status.CORRECTED, "reject": Status.REJECTED}


@dataclass
class Curator:
    """What the routes of one app share: the password, sessions, the failed-login limit, the pool."""

    password: Password
    sessions: Sessions
    failed: FailedLogins
    verifying: asyncio.Semaphore
    pool: Pool | None = None
    training: "asyncio.Task[dict[str, Any]] | None" = None  # the round this process started, if any
    last_round: dict[str, Any] | None = None  # what the last one it started printed (or why it failed)

    @classmethod
    def from_settings(cls, settings: Settings) -> "Curator":
        return cls(Password.from_settings(settings), Sessions(session_key(settings), settings.curator_session_s),
                   FailedLogins(settings.curator_max_failed_logins, settings.curator_lockout_s),
                   asyncio.Semaphore(VERIFY_AT_ONCE))


def curator_routes() -> list[BaseRoute]:
    return [
        Route("/learn", learn, methods=["GET"]),
        Route("/learn/login", login_form, methods=["GET"]),
        Route("/learn/login", login, methods=["POST"]),
        Route("/learn/logout", curator_only(logout), methods=["POST"]),
        Route("/learn/api/pool", curator_only(api_pool), methods=["GET"]),
        Route("/learn/api/drawings/{drawing}", curator_only(api_drawing), methods=["GET"]),
        Route("/learn/api/drawings/{drawing}", curator_only(api_moderate), methods=["POST"]),
        Route("/learn/api/rounds", curator_only(api_rounds), methods=["GET"]),
        Route("/learn/api/rounds", curator_only(api_start_round), methods=["POST"]),
    ]


def curator_of(request: Request) -> Curator:
    curator: Curator = request.app.state.curator
    return curator


def session_of(request: Request) -> Session | None:
    return curator_of(request).sessions.load(request.cookies.get(COOKIE))


def with_session(response: Response, request: Request, session: Session) -> Response:
    """``response`` setting the signed session cookie (only sent back to /learn, never readable by scripts)."""
    curator = curator_of(request)
    response.set_cookie(COOKIE, curator.sessions.dump(session), max_age=round(curator.sessions.max_age_s),
                        path="/learn", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


Handler = Callable[[Request, Session], Awaitable[Response]]


def curator_only(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """401 without a curator session; for a POST, 403 without its CSRF token (header or form field)."""
    async def guarded(request: Request) -> Response:
        session = session_of(request)
        if session is None or not session.curator:
            return JSONResponse({"error": "log in at /learn/login"}, status.HTTP_401_UNAUTHORIZED)
        if request.method == "POST":
            token = request.headers.get("x-csrf-token")
            if token is None and request.headers.get("content-type", "").startswith(
                    "application/x-www-form-urlencoded"):
                token = ((await read_form(request)) or {}).get("csrf")
            if not csrf_valid(session, token):
                return JSONResponse({"error": "missing or wrong CSRF token"}, status.HTTP_403_FORBIDDEN)
        return await handler(request, session)
    return guarded


async def read_form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form (first value of each field), or ``None`` if too large or not UTF-8."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        return None
    return {name: values[0] for name, values in fields.items()}


def client_address(request: Request) -> str:
    """The peer as uvicorn reports it (behind a trusted proxy: the address X-Forwarded-For names)."""
    return request.client.host if request.client is not None else "unknown"


async def learn(request: Request) -> Response:
    session = session_of(request)
    if session is None or not session.curator:
        return RedirectResponse("/learn/login", status.HTTP_303_SEE_OTHER)
    return HTMLResponse(pages.learn_page(session.csrf), headers={"cache-control": "no-store"})


async def login_form(request: Request) -> Response:
    session = session_of(request) or curator_of(request).sessions.new()
    page = pages.login_page(session.csrf, configured=curator_of(request).password.configured)
    return with_session(HTMLResponse(page, headers={"cache-control": "no-store"}), request, session)


async def login(request: Request) -> Response:
    """Check the form's CSRF token and password; count every failure per client address."""
    curator, address, now = curator_of(request), client_address(request), time.monotonic()
    wait_s = curator.failed.locked(address, now)
    if wait_s > 0:
        return Response("too many failed logins: try again later\n", status.HTTP_429_TOO_MANY_REQUESTS,
                        headers={"retry-after": str(int(wait_s) + 1)}, media_type="text/plain")
    session = session_of(request)
    form = await read_form(request)
    if form is None or session is None or not csrf_valid(session, form.get("csrf")):
        curator.failed.record(address, now)
        event("curator_login_refused", logging.WARNING, client=address, reason="csrf")
        fresh = curator.sessions.new()
        page = pages.login_page(fresh.csrf, "The form expired or was not sent from this page: try again.",
                                curator.password.configured)
        return with_session(HTMLResponse(page, status.HTTP_403_FORBIDDEN), request, fresh)
    async with curator.verifying:
        right = await asyncio.to_thread(curator.password.verify, form.get("password", ""))
    if not right:
        curator.failed.record(address, now)
        event("curator_login_refused", logging.WARNING, client=address, reason="password")
        page = pages.login_page(session.csrf, "Wrong password.", curator.password.configured)
        return with_session(HTMLResponse(page, status.HTTP_401_UNAUTHORIZED), request, session)
    event("curator_logged_in", client=address)
    return with_session(RedirectResponse("/learn", status.HTTP_303_SEE_OTHER), request,
                        curator.sessions.new(curator=True))


async def logout(request: Request, session: Session) -> Response:
    response = RedirectResponse("/learn/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(COOKIE, path="/learn")
    return response


def pool_of(request: Request) -> tuple[Pool, str]:
    """The process's pool reader (made on first use, after the lifespan) and the model it reads with."""
    curator, services = curator_of(request), services_of(runtime_of(request))
    if curator.pool is None:
        curator.pool = Pool(services.batcher)
    return curator.pool, services.catalog.default_model


def summary(drawing: Drawing, probabilities: np.ndarray) -> dict[str, Any]:
    p = probabilities[None, :].astype(np.float64)
    return {"id": drawing.id, "label": drawing.label, "curated_label": drawing.curated_label,
            "status": drawing.status, "created_at": drawing.created_at.isoformat(),
            "prediction": int(np.argmax(probabilities)), "probabilities": np.round(p[0], 4).tolist(),
            "uncertainty": {"least_confidence": round(float(strategies.least_confidence(p)[0]), 4),
                            "margin": round(float(strategies.margin(p)[0]), 4),
                            "entropy": round(float(strategies.entropy(p)[0]), 4)}}


async def api_pool(request: Request, session: Session) -> Response:
    """The pool (proposed drawings) with the serving model's reading, a strategy's proposal and the 2-D map.

    Query: ``strategy`` (one of :data:`strategies.STRATEGIES`, default least_confidence), ``n`` (1–50, default 8).
    """
    strategy = request.query_params.get("strategy", "least_confidence")
    if strategy not in strategies.STRATEGIES:
        return JSONResponse({"error": f"unknown strategy; expected one of {', '.join(strategies.STRATEGIES)}"},
                            status.HTTP_400_BAD_REQUEST)
    try:
        n = int(request.query_params.get("n", "8"))
    except ValueError:
        n = -1
    if not 1 <= n <= MAX_PROPOSED:
        return JSONResponse({"error": f"n must be an integer in 1 .. {MAX_PROPOSED}"}, status.HTTP_400_BAD_REQUEST)
    pool, model = pool_of(request)
    store = services_of(runtime_of(request)).teacher.store
    proposed = await store.with_status([Status.PROPOSED], MAX_POOL)
    labelled = await store.with_status([Status.CONFIRMED, Status.CORRECTED], MAX_POOL)
    readings = await pool.read(model, proposed)
    labelled_readings = await pool.read(model, labelled)
    probabilities = np.stack([r.probabilities for r in readings]) if readings else np.zeros((0, 10))
    embedding = np.stack([r.embedding for r in readings]) if readings else np.zeros((0, 1))
    known = np.stack([r.embedding for r in labelled_readings]) if labelled_readings else np.zeros((0, 1))
    # k-means and the projection are numpy/scikit-learn work: off the event loop.
    picks, points = await asyncio.to_thread(
        lambda: (strategies.propose(strategy, probabilities, embedding, known, n), strategies.project_2d(embedding)))
    items = [summary(drawing, reading.probabilities) for drawing, reading in zip(proposed, readings)]
    return JSONResponse({
        "model": model, "strategy": strategy, "strategies": list(strategies.STRATEGIES),
        "pool": items, "proposed": [proposed[i].id for i in picks], "labelled": len(labelled),
        "map": [{"id": item["id"], "x": round(float(x), 4), "y": round(float(y), 4),
                 "uncertainty": item["uncertainty"]["least_confidence"]} for item, (x, y) in zip(items, points)],
    }, headers={"cache-control": "no-store"})


async def api_rounds(request: Request, session: Session) -> Response:
    """The serving model's training rounds, newest first: each version's round, sha256, date and what its round
    measured (per held-out set: accuracy before and after, noise, per-class accuracy, confusion matrices)."""
    runtime = runtime_of(request)
    model = services_of(runtime).catalog.default_model
    chain = await asyncio.to_thread(history, model, runtime.settings.model_store_dir)
    serving = services_of(runtime).versions.serving(model)
    curator = curator_of(request)
    running = curator.training is not None and not curator.training.done()
    return JSONResponse({"model": model, "serving_sha256": serving, "running": running,
                         "last": curator.last_round, "rounds": [
        {"round": entry.get("round", 0), "sha256": entry["sha256"], "created": entry.get("created"),
         "drawings": len(entry.get("provenance", {}).get("drawings", [])),
         "evaluations": entry.get("provenance", {}).get("evaluations", {}),
         "maps": entry.get("provenance", {}).get("maps", [])} for entry in chain]},
        headers={"cache-control": "no-store"})


MAX_ROUND_EPOCHS = 200


async def api_start_round(request: Request, session: Session) -> Response:
    """Start ``python -m model_store learn`` in a worker process: ``{"accept_proposed": bool, "epochs": int}``
    (both optional).  202 once started; 409 while this process's previous round runs."""
    curator = curator_of(request)
    if curator.training is not None and not curator.training.done():
        return JSONResponse({"error": "a round is already running"}, status.HTTP_409_CONFLICT)
    body = await request.body()
    try:
        document = orjson.loads(body) if body and len(body) <= MAX_FORM_BYTES else {}
    except orjson.JSONDecodeError:
        document = None
    epochs = document.get("epochs", 20) if isinstance(document, dict) else None
    if not isinstance(document, dict) or not isinstance(document.get("accept_proposed", False), bool) \
            or not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= MAX_ROUND_EPOCHS:
        return JSONResponse({"error": f"expected {{\"accept_proposed\": bool, \"epochs\": 1 .. {MAX_ROUND_EPOCHS}}}"},
                            status.HTTP_400_BAD_REQUEST)
    settings = runtime_of(request).settings
    command = training_command(settings, services_of(runtime_of(request)).catalog.default_model,
                               document.get("accept_proposed", False), epochs)
    curator.training = asyncio.create_task(run_round(command, settings))
    curator.training.add_done_callback(lambda task: finished_round(curator, task))
    event("training_round_started", epochs=epochs)
    return JSONResponse({"status": "running"}, status.HTTP_202_ACCEPTED)


def training_command(settings: Settings, model: str, accept_proposed: bool, epochs: int) -> list[str]:
    store = ["--store", str(settings.model_store_dir)] if settings.model_store_dir is not None else []
    return [sys.executable, "-m", "model_store", *store, "learn", "--json", "--name", model, "--epochs", str(epochs),
            "--data-dir", str(settings.data_dir), *(["--accept-proposed"] if accept_proposed else [])]


async def run_round(command: list[str], settings: Settings) -> dict[str, Any]:
    """Run the round's command (its own process: training never runs in a server's event loop or GIL)."""
    # The database URL travels in the environment, never on a command line others can read (ps).
    environment = {**os.environ, "DATABASE_URL": settings.database_url}
    if settings.database_url_file is not None:
        environment["DATABASE_URL_FILE"] = str(settings.database_url_file)
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE, env=environment)
    out, err = await process.communicate()
    if process.returncode != 0:
        return {"error": err.decode(errors="replace").strip().splitlines()[-1:] or ["failed"],
                "status": process.returncode}
    result: dict[str, Any] = orjson.loads(out)
    return {key: result[key] for key in ("promoted", "blocked_by", "version", "seconds", "data")
            if key in result} | {"evaluations": {name: {k: v for k, v in e.items() if k in ("n", "before", "after",
                                                                                          "change", "noise", "blocked")}
                                                 for name, e in result.get("evaluations", {}).items()}}


def finished_round(curator: Curator, task: "asyncio.Task[dict[str, Any]]") -> None:
    if task.cancelled():
        curator.last_round = {"error": ["cancelled (the server stopped)"]}
        return
    error = task.exception()
    curator.last_round = {"error": [f"{type(error).__name__}: {error}"]} if error is not None else task.result()
    event("training_round_finished", logging.INFO if error is None else logging.ERROR,
          promoted=curator.last_round.get("promoted"), error=curator.last_round.get("error"))


def drawing_id(request: Request) -> int | None:
    text = request.path_params["drawing"]
    return int(text) if text.isdigit() and len(text) <= 12 else None


async def api_drawing(request: Request, session: Session) -> Response:
    """One drawing: strokes, labels, the reading and its contrast explanation (top class vs runner-up)."""
    found = drawing_id(request)
    store = services_of(runtime_of(request)).teacher.store
    drawing = None if found is None else await store.get(found)
    if drawing is None:
        return JSONResponse({"error": "no such drawing"}, status.HTTP_404_NOT_FOUND)
    pool, model = pool_of(request)
    reading = (await pool.read(model, [drawing]))[0]
    return JSONResponse({**summary(drawing, reading.probabilities), "strokes": drawing.strokes,
                         "contrast": await pool.contrast(model, drawing)}, headers={"cache-control": "no-store"})


async def api_moderate(request: Request, session: Session) -> Response:
    """``{"action": "confirm" | "correct" | "reject", "label": 0-9 (correct only)}`` → the drawing's new state."""
    found = drawing_id(request)
    body = await request.body()
    try:
        document = orjson.loads(body) if len(body) <= MAX_FORM_BYTES else None
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or document.get("action") not in MODERATION:
        return JSONResponse({"error": f"expected {{\"action\": one of {', '.join(MODERATION)}}}"},
                            status.HTTP_400_BAD_REQUEST)
    action, label = document["action"], document.get("label")
    if action == "correct" and not (isinstance(label, int) and not isinstance(label, bool) and 0 <= label <= 9):
        return JSONResponse({"error": "correct needs a label 0 .. 9"}, status.HTTP_400_BAD_REQUEST)
    store = services_of(runtime_of(request)).teacher.store
    drawing = None if found is None else await store.moderate(found, MODERATION[action],
                                                               label if action == "correct" else None)
    if drawing is None:
        return JSONResponse({"error": "no such drawing"}, status.HTTP_404_NOT_FOUND)
    event("drawing_moderated", id=drawing.id, action=action)
    return JSONResponse({"id": drawing.id, "status": drawing.status, "label": drawing.label,
                         "curated_label": drawing.curated_label})
