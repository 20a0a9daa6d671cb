"""The Starlette app: its routes, each served by the module of its concept.

Routes (docs/protocol.md, "HTTP endpoints"): ``/`` and ``/static`` (the
page), ``/ws`` (one WebSocket per visitor: :mod:`server.gate`, then
:mod:`server.session`), ``/healthz``, ``/readyz``, ``/metrics``
(:mod:`server.health`), ``/api/models`` and ``/api/models/{name}/neurons/{j}``
(:mod:`server.neuron_api`), ``/learn`` and its API behind a curator login
(:mod:`server.curator.routes`; nothing of it is reachable from ``/ws``).  Start-up and shutdown: :mod:`server.lifespan`;
the state they share: :mod:`server.runtime`.
"""

from collections.abc import Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from .curator.routes import Curator, curator_routes
from .gate import websocket_endpoint
from .healing import terminate_self
from .health import healthz, metrics_endpoint, readyz
from .inference.jobs import EngineFactory, default_engine_factory
from .lifespan import lifespan
from .metrics import create_metrics
from .neuron_api import api_concept, api_models, api_neuron, api_weights
from .replica import Replica
from .runtime import Runtime
from .settings import Settings
from .startup import QuietStartupFailure

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
PLACEHOLDER_PAGE = "<!doctype html><title>xai-live</title><p>The page is not built yet: connect to /ws.</p>"


def create_app(settings: Settings | None = None, engine_factory: EngineFactory = default_engine_factory,
               end_process: Callable[[], None] = terminate_self) -> Starlette:
    """The app for ``settings`` (default: from the environment).

    ``engine_factory(model, backend)`` builds one engine per worker thread
    and model; tests pass a wrapper to inject inference failures.
    ``end_process()`` is called once no engine thread is left (:mod:`server.healing`); by default the
    process sends itself SIGTERM, a server inside a test process is stopped instead.
    """
    settings = settings or Settings.from_env()
    runtime = Runtime(settings, engine_factory, create_metrics(), Replica.from_env(settings.processes),
                      end_process)
    routes = [
        Route("/", homepage),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
        Route("/api/models", api_models),
        # Plain text, parsed by parse_index: Starlette's ":int" converts any digit run and a 5,001-digit one
        # raises inside the router (Python's int-conversion limit), a 500.
        Route("/api/models/{name}/neurons/{neuron}", api_neuron),
        Route("/api/models/{name}/weights", api_weights),
        Route("/api/models/{name}/concepts/{layer}/{channel}", api_concept),
        WebSocketRoute("/ws", websocket_endpoint),
        *curator_routes(),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(QuietStartupFailure)])
    app.state.runtime = runtime
    app.state.curator = Curator.from_settings(settings)
    return app


async def homepage(request: Request) -> Response:
    index = STATIC_DIR / "index.html"
    return FileResponse(index) if index.is_file() else HTMLResponse(PLACEHOLDER_PAGE)
