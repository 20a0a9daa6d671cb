"""The ``Origin`` allowlist of ``/ws`` (RFC 6455 §10.2, RFC 6454).

Browsers send the page's origin with every WebSocket handshake; checking it
before accepting stops another site's page from opening a socket to this
server with the visitor's browser (cross-site WebSocket hijacking).
Non-browser clients may send any Origin: this is not authentication.

An allowlist entry is one of:

- ``self``: the origin the request was addressed to, ``http[s]://`` + its
  ``Host`` header (``https`` when the socket is ``wss``);
- ``scheme://host:*``: that scheme and host with any port, or none;
- ``scheme://host[:port]``: exactly that origin.

Comparison ignores ASCII case.  A missing Origin (or ``null``) matches nothing.
"""

from collections.abc import Iterable

from .settings import SELF_ORIGIN

ANY_PORT = ":*"


def origin_allowed(origin: str | None, host: str | None, secure: bool, allowed: Iterable[str]) -> bool:
    """Whether ``origin`` matches an entry of ``allowed`` for a request to ``host``.

    Parameters
    ----------
    origin: the request's ``Origin`` header, or ``None`` if absent.
    host: the request's ``Host`` header, or ``None`` if absent.
    secure: whether the WebSocket is ``wss`` (then ``self`` means ``https://host``).
    allowed: allowlist entries (see the module docstring).
    """
    if not origin or origin == "null":
        return False
    origin = origin.lower()
    return any(_matches(origin, entry.lower(), host, secure) for entry in allowed)


def _matches(origin: str, entry: str, host: str | None, secure: bool) -> bool:
    if entry == SELF_ORIGIN:
        return host is not None and origin == f"{'https' if secure else 'http'}://{host.lower()}"
    if entry.endswith(ANY_PORT):
        base = entry[: -len(ANY_PORT)]
        port = origin[len(base) + 1:]
        return origin == base or (origin.startswith(base + ":") and port.isdigit() and port.isascii())
    return origin == entry
