"""The ``/ws`` gate: Origin (403 before any WebSocket), readiness and capacity (1013), then a visitor's session."""

from starlette import status
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from .origins import origin_allowed
from .runtime import Runtime, readiness, runtime_of, services_of
from .session import Session


def refuse(runtime: Runtime, reason: str, **fields: int) -> None:
    """Count a refused WebSocket in the metrics (every one) and the log (rate-limited)."""
    runtime.metrics.rejected_connections.labels(reason).inc()
    runtime.refusal_logs[reason](reason=reason, **fields)


async def websocket_endpoint(websocket: WebSocket) -> None:
    """Check the Origin (403 before accept), then readiness and capacity (1013 after accept), then serve."""
    runtime = runtime_of(websocket)
    settings = runtime.settings
    if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"),
                          websocket.url.scheme == "wss", settings.allowed_origins):
        refuse(runtime, "origin")
        await websocket.send_denial_response(PlainTextResponse("origin not allowed",
                                                               status_code=status.HTTP_403_FORBIDDEN))
        return
    if not readiness(runtime)[0]:
        # Accepted, then closed: a browser sees a close code and reason, never a bare failed handshake.
        refuse(runtime, "not_ready")
        await websocket.accept()
        await websocket.close(status.WS_1013_TRY_AGAIN_LATER, "server not ready")
        return
    over_capacity = runtime.sessions >= settings.max_connections
    if not over_capacity:
        runtime.sessions += 1  # reserved before the first await, so two newcomers cannot both pass
    try:
        await websocket.accept()
        if over_capacity:
            refuse(runtime, "capacity", open=runtime.sessions)
            await websocket.close(status.WS_1013_TRY_AGAIN_LATER, "server at capacity")
            return
        await Session(websocket, services_of(runtime)).run()
    finally:
        if not over_capacity:
            runtime.sessions -= 1
