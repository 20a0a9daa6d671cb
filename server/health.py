"""The health routes: ``/healthz``, ``/readyz`` (docs/architecture.md: what they mean) and ``/metrics``."""

from prometheus_client import CONTENT_TYPE_LATEST
from starlette import status
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from .replica import Verdict
from .runtime import publish_own_status, runtime_of


async def healthz(request: Request) -> Response:
    """200 while every process of the replica can compute frames (server.replica)."""
    runtime = runtime_of(request)
    publish_own_status(runtime)
    return _verdict_response(runtime.replica.health())


async def readyz(request: Request) -> Response:
    """200 once every process of the replica passed its start-up check, while all stay healthy."""
    runtime = runtime_of(request)
    publish_own_status(runtime)
    return _verdict_response(runtime.replica.readiness())


def _verdict_response(verdict: Verdict) -> Response:
    code = status.HTTP_200_OK if verdict.ok else status.HTTP_503_SERVICE_UNAVAILABLE
    return PlainTextResponse(verdict.reason, status_code=code)


async def metrics_endpoint(request: Request) -> Response:
    return Response(runtime_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
