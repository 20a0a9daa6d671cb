"""Keepalive and lost connections (issue 14, items 3 and 8): a peer that stopped reading is released by the
ping timeout whatever its buffers hold, and logs and metrics count the close code the peer saw.

The peers here are raw TCP sockets speaking WebSocket through websockets' sans-I/O client, so that a test
decides exactly what the peer reads, answers and sends: the websockets client library would answer pings.
"""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.uri import parse_uri

from support import metric, running_app, wait_for_metric, ws_url

PING_INTERVAL_S = 0.5
PING_TIMEOUT_S = 0.5
SEND_TIMEOUT_S = 1.0
RELEASE_BOUND_S = PING_INTERVAL_S + PING_TIMEOUT_S + SEND_TIMEOUT_S
KEEPALIVE = {"ping_interval_s": PING_INTERVAL_S, "ping_timeout_s": PING_TIMEOUT_S,
             "send_timeout_s": SEND_TIMEOUT_S, "idle_timeout_s": 120.0}


class RawPeer:
    """A WebSocket client on a raw socket: nothing is read, answered or sent unless the test says so."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock, self.protocol = sock, protocol
        self.loop = asyncio.get_running_loop()
        self.seq = 0

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            await self.loop.sock_sendall(self.sock, data)

    async def send(self, kind: str, **fields: object) -> None:
        self.seq += 1
        self.protocol.send_text(orjson.dumps({"type": kind, "seq": self.seq, **fields}))
        await self.flush()

    async def read_some(self) -> list[object]:
        """Read what has arrived (at most 64 kB) and return the protocol's events; pings are not answered."""
        data = await self.loop.sock_recv(self.sock, 65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return list(self.protocol.events_received())


@asynccontextmanager
async def raw_peer(base_url: str, receive_buffer_bytes: int = 4096) -> AsyncIterator[RawPeer]:
    """Open ``/ws`` with a small receive buffer and complete the handshake; read nothing after it.

    On exit the socket is closed with unread data in it: the server sees a reset, no close frame.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", urlsplit(base_url).port or 0))
        protocol = ClientProtocol(parse_uri(ws_url(base_url)))
        request = protocol.connect()
        request.headers["Origin"] = base_url
        protocol.send_request(request)
        peer = RawPeer(sock, protocol)
        await peer.flush()
        while not any(isinstance(event, Response) for event in await peer.read_some()):
            pass  # the response came in pieces
        yield peer
    finally:
        sock.close()


async def test_the_ping_timeout_releases_a_peer_whose_buffers_are_full() -> None:
    async with running_app(send_buffer_bytes=8192, **KEEPALIVE) as url, raw_peer(url) as peer:
        await wait_for_metric(url, "xai_open_connections", 1)
        # Comparisons of 8 maps (~9 kB each) pile up behind a peer that reads nothing: the kernel's buffers
        # fill (16 kB sent, a few kB received), then uvicorn's, but stay below its high-water mark, so no
        # send waits (a waiting send would end in SEND_TIMEOUT_S). Then the peer goes quiet.
        for _ in range(5):
            await peer.send("compare", methods=["lrp"] * 8)
            await asyncio.sleep(0.05)
        quiet_at = asyncio.get_running_loop().time()
        await wait_for_metric(url, "xai_open_connections", 0, timeout_s=RELEASE_BOUND_S + 1.0)
        assert asyncio.get_running_loop().time() - quiet_at <= RELEASE_BOUND_S + 0.5
        assert await metric(url, "xai_closed_connections_total", code="1006") == 1  # aborted: the peer saw a drop
        assert await metric(url, "xai_closed_connections_total", code="1005") == 0


async def test_a_peer_that_reads_but_never_answers_pings_is_closed_1011() -> None:
    async with running_app(**KEEPALIVE) as url, raw_peer(url, receive_buffer_bytes=1 << 20) as peer:
        async def read_everything() -> None:
            while not peer.protocol.close_rcvd:
                await peer.read_some()
        reading = asyncio.create_task(read_everything())
        try:
            await wait_for_metric(url, "xai_closed_connections_total", 1, timeout_s=RELEASE_BOUND_S + 1.0,
                                  code="1011")
        finally:
            reading.cancel()
        assert peer.protocol.close_rcvd is not None and peer.protocol.close_rcvd.code == 1011


async def test_a_peer_that_drops_the_connection_is_counted_1006_not_1005() -> None:
    async with running_app() as url:
        async with raw_peer(url):
            await wait_for_metric(url, "xai_open_connections", 1)
        # the peer's socket is gone (aborted, its welcome unread: an RST), without a close frame
        await wait_for_metric(url, "xai_closed_connections_total", 1, code="1006")
        assert await metric(url, "xai_closed_connections_total", code="1005") == 0


FIN_WAIT_1 = 0x04  # include/net/tcp_states.h, the "st" column of /proc/net/tcp


def sockets_holding_data_in_fin_wait_1(port: int) -> list[str]:
    """Lines of ``/proc/net/tcp`` for 127.0.0.1:``port`` in FIN-WAIT-1 with a send queue (what the kernel
    still holds for a peer, after the server closed its end)."""
    held = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        tx_queue = int(fields[4].split(":")[0], 16)
        if local_port == port and int(fields[3], 16) == FIN_WAIT_1 and tx_queue > 0:
            held.append(line)
    return held


@pytest.mark.parametrize("comparisons", [1, 40], ids=["kernel-buffer", "kernel-and-uvicorn-buffers"])
async def test_a_released_peer_that_never_reads_leaves_no_socket_holding_data(comparisons: int) -> None:
    # Issue 29.5: the release aborted the transport without SO_LINGER 0, and the kernel kept the socket in
    # FIN-WAIT-1 holding 2.99 MB for ~330 s. One comparison (~70 kB) fits the kernel's buffers: the keepalive
    # releases the peer. Forty (~3 MB) fill uvicorn's too: a send times out first.
    async with running_app(**KEEPALIVE) as url, raw_peer(url) as peer:
        await wait_for_metric(url, "xai_open_connections", 1)
        for _ in range(comparisons):
            await peer.send("compare", methods=["lrp"] * 8)
        await wait_for_metric(url, "xai_open_connections", 0, timeout_s=RELEASE_BOUND_S + 5.0)
        await asyncio.sleep(0.2)  # the socket's close, after the session's end
        assert sockets_holding_data_in_fin_wait_1(urlsplit(url).port or 0) == []
        assert await metric(url, "xai_closed_connections_total", code="1006") == 1
