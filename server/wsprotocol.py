"""uvicorn's WebSocket protocol (websockets sans-I/O) with the four things this server needs added.

1. **Release a peer that stopped reading.**  uvicorn ends a connection with
   ``transport.close()``, which keeps the socket open until its send buffer
   drains, i.e. forever if the peer never reads again (measured here: 3 MB
   stuck in Send-Q, the connection still in uvicorn's table after the
   handler returned).  The protocol therefore offers the ASGI app an
   ``abort`` callable in ``scope["extensions"]["xai.abort"]`` that resets
   the TCP connection at once (:func:`server.sockets.reset`: the kernel's
   buffers go too).  The keepalive timeout and the close handshake's
   timeout reset a peer that has not taken what was sent to it, too.
2. **Invalid UTF-8 without a traceback.**  uvicorn decodes text frames itself
   and logs a full exception for bad UTF-8 (``send_receive_event_to_app``),
   so any peer could fill the log.  Text messages are checked first here;
   a bad one fails the connection with 1007 (RFC 6455 §8.1: an endpoint
   that receives invalid UTF-8 in a text message must *Fail the WebSocket
   Connection*) and is logged as one rate-limited line.
3. **A refused handshake is not an error.**  uvicorn 0.54 does not count a
   denial response (the 403 for a foreign Origin) as the end of the
   handshake and logs "ASGI callable returned without completing
   handshake." at ERROR for each one; the protocol marks the handshake done
   once the denial is sent.
4. **A peer's protocol error is one quiet line, at any moment.**  When a
   frame breaks RFC 6455 (an unmasked frame, a reserved opcode…),
   websockets fails the connection and uvicorn marks the close as sent; the
   app's next ``send`` (the welcome, if the error came right after the 101)
   then raised ``RuntimeError("Unexpected ASGI message 'websocket.send',
   after sending 'websocket.close'")``, logged by the session with a
   traceback: ~320 ERROR lines a second from one client.  Here such a send
   raises uvicorn's ``ClientDisconnected`` (Starlette turns it into
   ``WebSocketDisconnect`` 1006, the peer is gone), and the protocol error
   is logged as one rate-limited WARNING line naming the close code.
"""

import functools
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import CloseCode
from websockets.http11 import Request

from .logs import RateLimitedEvent
from .sockets import reset, unacknowledged_bytes

ABORT_EXTENSION = "xai.abort"
# A key of our own in ``websocket.disconnect`` events this protocol makes up: why the server ended the connection.
CAUSE_KEY = "xai.cause"
KEEPALIVE_TIMEOUT = "keepalive ping timeout"

_log_invalid_utf8 = RateLimitedEvent("invalid_utf8_closed_1007")
_log_protocol_error = RateLimitedEvent("protocol_error_closed")


class ReleasingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol plus an abort extension and a quiet UTF-8 check."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope: dict[str, Any] | None = getattr(self, "scope", None)
        if scope is not None:  # absent when the handshake itself was refused
            scope["extensions"][ABORT_EXTENSION] = {"abort": functools.partial(reset, self.transport)}

    def keepalive_timeout(self) -> None:
        if self.close_sent or self.transport.is_closing():
            return super().keepalive_timeout()  # already ending: uvicorn does nothing either
        # Data the peer has not taken in a whole ping timeout: it stopped reading, and the close frame would
        # wait behind that data, in FIN-WAIT-1, for minutes.
        stuck = unacknowledged_bytes(self.transport) > 0
        super().keepalive_timeout()  # writes the 1011 close frame, closes the transport gracefully
        code = CloseCode.INTERNAL_ERROR
        if stuck:
            reset(self.transport)
            code = CloseCode.ABNORMAL_CLOSURE
        self.queue.put_nowait({"type": "websocket.disconnect", "code": int(code), CAUSE_KEY: KEEPALIVE_TIMEOUT})  # type: ignore[arg-type]  # + CAUSE_KEY

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handshake_complete:
            # Read only if nothing came before it (a close frame, our own close): RFC 6455 §7.1.5.
            self.queue.put_nowait({"type": "websocket.disconnect", "code": int(CloseCode.ABNORMAL_CLOSURE)})
        super().connection_lost(exc)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not _is_utf8(self.frames):
            self.frames = []
            _log_invalid_utf8(client=_client(self.client))
            # RFC 6455 §7.1.7: fail the connection; websockets sends the close frame.
            self.conn.fail(CloseCode.INVALID_DATA, "invalid UTF-8")
            self.handle_parser_exception()
            return
        super().send_receive_event_to_app()

    def handle_parser_exception(self) -> None:
        if self.conn.parser_exc is not None:  # a frame broke RFC 6455 (the UTF-8 check above logs its own)
            close = self.conn.close_sent
            _log_protocol_error(code=close.code if close is not None else None, client=_client(self.client))
        super().handle_parser_exception()

    async def send(self, message: ASGISendEvent) -> None:
        if self.handshake_complete and self.close_sent and self.initial_response is None \
                and message["type"] in ("websocket.send", "websocket.close"):
            raise ClientDisconnected()  # failed by a protocol error (item 4 above): the peer is gone for the app
        await super().send(message)
        if message["type"] == "websocket.close" and self.close_timer is not None:
            # uvicorn closes the transport when the peer has not echoed our close frame in close_timeout;
            # a peer that stopped reading is reset instead (item 1 above).
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)
        if message["type"] == "websocket.http.response.body" and self.close_sent:
            self.handshake_complete = True  # the denial response ended it; see item 3 above

    def _close_timed_out(self) -> None:
        self.close_timer = None
        if unacknowledged_bytes(self.transport) > 0:
            reset(self.transport)
        else:
            self.transport.close()

# The serving stack, shared with the latency benchmark's floor server
# (benchmarks/floor_server.py) so that the two differ only in the app.  uvloop
# and httptools come with uvicorn[standard]; uvicorn's "auto" would pick them
# too, but silently falls back to asyncio and h11.  uvloop also keeps the GIL
# through a socket write, where asyncio's sock.send() releases it: the event
# loop then need not win the GIL back from an engine thread after every frame.
STACK_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "ws": ReleasingWebSocketProtocol,
    "ws_per_message_deflate": False,  # a deflate bomb must not cost memory
}


def _is_utf8(fragments: list[bytes]) -> bool:
    try:
        b"".join(fragments).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _client(address: tuple[str, int] | None) -> str | None:
    return f"{address[0]}:{address[1]}" if address else None
