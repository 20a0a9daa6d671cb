"""Dropping a TCP connection so that its kernel buffers go at once: a reset, not a close.

``transport.abort()`` drops asyncio's own buffer but ends the socket with an
ordinary ``close(2)``, and so does ``transport.close()`` once that buffer is
written: the kernel keeps what the peer has not taken and tries to deliver
it, then the FIN behind it.  A peer that stopped reading (a zero window)
leaves the socket in FIN-WAIT-1 with its send queue full until the kernel's
retransmissions give up: measured here, 2.99 MB held for ~330 s after the
keepalive released such a peer; a few hundred such peers hold a gigabyte.
With ``SO_LINGER`` on and a linger time of 0, ``close(2)`` sends a RST and
frees the buffers at once (socket(7)).
"""

import asyncio
import fcntl
import socket
import struct
import termios

_LINGER_ON_RESET = struct.pack("ii", 1, 0)  # struct linger {l_onoff = 1, l_linger = 0}: close() resets
_INT = struct.Struct("i")


def reset(transport: asyncio.WriteTransport) -> None:
    """Abort ``transport``'s connection with a TCP reset: its kernel send queue is freed at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:  # -1: closed already, nothing left to free
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ON_RESET)
    transport.abort()


def unacknowledged_bytes(transport: asyncio.WriteTransport) -> int:
    """Bytes written to ``transport`` that the peer's TCP has not acknowledged yet: the transport's own
    buffer plus the kernel's send queue (``SIOCOUTQ``, tcp(7); 0 once the socket is closed)."""
    queued = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.fileno() >= 0:
        queued += _INT.unpack(fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(_INT.size)))[0]  # == SIOCOUTQ
    return queued
