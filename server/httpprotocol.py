"""uvicorn's httptools protocol with a header timeout: half-sent request headers are not held forever.

uvicorn 0.54 has no such limit (its keep-alive timeout only runs between
requests, and stops at a request's first byte): a client that sends part of
its headers and then nothing holds the connection open indefinitely, and a
few hundred such clients (slowloris) hold every file descriptor of a server
exposed without a proxy.  Here a request's headers must be complete within
``header_timeout_s`` of the connection opening, or of the request's first
byte on a kept-alive connection; otherwise the connection is closed without
an answer.  nginx does the same in front of the replicas
(``client_header_timeout``).  Once the headers are in, the timer stops: a
WebSocket upgraded from the request lives on under its own keepalive.
"""

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .logs import RateLimitedEvent
from .sockets import reset

_log_header_timeout = RateLimitedEvent("header_timeout_closed", level=logging.INFO)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that closes a connection whose request headers take over ``header_timeout_s``."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.header_timer is None:  # a later request on a kept-alive connection; the first is timed already
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _stop_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_timed_out(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        _log_header_timeout(timeout_s=self.header_timeout_s)
        if self.transport.get_write_buffer_size():
            reset(self.transport)  # close() would wait for a peer that does not read to drain the buffer
        else:
            self.transport.close()
