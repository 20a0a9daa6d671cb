"""A start-up failure an operator can fix (a store defect, an unknown model) as one log line, not a traceback.

Starlette reports any exception of the lifespan to uvicorn with its
traceback as the message, and uvicorn logs that at ERROR.  The lifespan
raises :class:`StartupError` for the failures whose message says all there is
to say; :class:`QuietStartupFailure` logs those as one ``startup_failed``
event and tells uvicorn that start-up failed with no message (uvicorn adds
its fixed "Application startup failed. Exiting." and exits with status 3).
Any other exception keeps its traceback: that is a bug to read.
"""

import logging
import traceback

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .logs import event


class StartupError(Exception):
    """The server cannot start, for the reason in the message (names the file, model, field or setting)."""


class QuietStartupFailure:
    """ASGI middleware: a :class:`StartupError` in the lifespan becomes one log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_unless_failed(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "lifespan.startup.complete"
            if message["type"] != "lifespan.startup.failed":  # sent below, once the cause is known
                await send(message)

        try:
            await self.app(scope, receive, send_unless_failed)
        except StartupError as error:
            event("startup_failed", logging.ERROR, error=str(error))
            await send({"type": "lifespan.startup.failed", "message": ""})
        except BaseException:
            if not started:
                await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
            raise
