"""uvicorn's httptools protocol with request timeouts: half-sent headers or bodies are not held forever.

uvicorn 0.54 has no such limits (its keep-alive timeout only runs between
requests, and stops at a request's first byte): a client that sends part of
its headers, or announces a body (``Content-Length: 100000``) and sends it
at a byte a second, holds the connection open indefinitely, and a few
hundred such clients (slowloris, slow POST) hold every file descriptor of a
server exposed without a proxy.  Here

* a request's headers must be complete within ``header_timeout_s`` of the
  connection opening, or of the request's first byte on a kept-alive
  connection;
* a request's body must be complete within ``body_timeout_s`` of its
  headers (a request without a body is complete with them);

otherwise the connection is closed without an answer (an app waiting for
the body hears ``http.disconnect``).  nginx does the same in front of the
replicas (``client_header_timeout``, ``client_body_timeout``).  A WebSocket
upgraded from the request has no body and lives on under its own keepalive.
"""

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .logs import RateLimitedEvent
from .sockets import reset

_log_header_timeout = RateLimitedEvent("header_timeout_closed", level=logging.INFO)
_log_body_timeout = RateLimitedEvent("body_timeout_closed", level=logging.INFO)


class RequestTimeoutProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that closes a connection whose request headers take over ``header_timeout_s``
    or whose request body takes over ``body_timeout_s`` after them."""

    def __init__(self, *args: Any, header_timeout_s: float, body_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.header_timer is None:  # a later request on a kept-alive connection; the first is timed already
            self._start_header_timer()

    def on_headers_complete(self) -> None:
        self._stop_timers()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):  # a WebSocket has no body
            self.body_timer = self.loop.call_later(self.body_timeout_s, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._stop_timers()  # the body is in (httptools calls this at once for a request without one)
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._stop_timers()  # the transport is the WebSocket's from now on
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timers()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout_s, self._headers_timed_out)

    def _stop_timers(self) -> None:
        for timer in (self.header_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.body_timer = None

    def _headers_timed_out(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            _log_header_timeout(timeout_s=self.header_timeout_s)
            self._drop()

    def _body_timed_out(self) -> None:
        self.body_timer = None
        if not self.transport.is_closing():
            _log_body_timeout(timeout_s=self.body_timeout_s)
            self._drop()

    def _drop(self) -> None:
        if self.transport.get_write_buffer_size():
            reset(self.transport)  # close() would wait for a peer that does not read to drain the buffer
        else:
            self.transport.close()
