"""Who may curate: the password's argon2 hash, signed session cookies, CSRF tokens, the failed-login limit.

Sans-I/O apart from reading the secret files at start-up; :meth:`Password.verify`
costs ~50 ms of CPU and 64 MiB (argon2id, RFC 9106's second recommended
parameters, argon2-cffi's defaults): callers run it on a thread.
"""

import hmac
import os
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

from server.settings import Settings

SESSION_KEY_FILE = "curator-session.key"
COOKIE = "xai_curator"
MAX_TRACKED_ADDRESSES = 10_000  # failed-login windows kept; the oldest is dropped beyond this


class Password:
    """The curator's password as an argon2 hash; ``None``: none configured, nobody logs in."""

    def __init__(self, encoded_hash: str | None) -> None:
        self.hasher = PasswordHasher()
        self.encoded_hash = encoded_hash

    @classmethod
    def from_settings(cls, settings: Settings) -> "Password":
        """From ``curator_password_hash``, else ``curator_password``, else ``curator_password_file``."""
        if settings.curator_password_hash:
            return cls(settings.curator_password_hash)
        password = settings.curator_password
        if not password and settings.curator_password_file is not None:
            password = settings.curator_password_file.read_text().rstrip("\r\n")
        return cls(PasswordHasher().hash(password) if password else None)

    @property
    def configured(self) -> bool:
        return self.encoded_hash is not None

    def verify(self, password: str) -> bool:
        """Whether ``password`` is the curator's; blocking (~50 ms)."""
        if self.encoded_hash is None:
            return False
        try:
            return self.hasher.verify(self.encoded_hash, password)
        except (VerificationError, InvalidHashError):
            return False


def session_key(settings: Settings) -> bytes:
    """The cookie-signing key: ``curator_session_secret_file``, else a key file in ``data_dir`` made once.

    Every process of a replica (and every replica sharing ``data_dir``) reads the same file, so a
    login made on one process is valid on the others.  Created with ``O_EXCL`` and mode 0600: of
    processes starting together, one writes it and the others read it.
    """
    path = settings.curator_session_secret_file or settings.data_dir / SESSION_KEY_FILE
    if settings.curator_session_secret_file is None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
    key = _read_key(path)
    if len(key) < 32:
        raise ValueError(f"the session key in {path} is {len(key)} bytes, at least 32 are needed")
    return key


def _read_key(path: Path) -> bytes:
    # A second process may find the file created but not yet written: wait for its content briefly.
    for _ in range(100):
        key = path.read_bytes().strip()
        if key:
            return key
        os.sched_yield()
    return b""


@dataclass(frozen=True)
class Session:
    """What the signed cookie holds: the CSRF token of this browser, and whether it logged in."""

    csrf: str
    curator: bool = False


class Sessions:
    """Signs and reads session cookies (itsdangerous, HMAC-SHA1 over the JSON, with a timestamp)."""

    def __init__(self, key: bytes, max_age_s: float) -> None:
        self.serializer = URLSafeTimedSerializer(key, salt="xai-curator-session")
        self.max_age_s = max_age_s

    def new(self, curator: bool = False) -> Session:
        """A fresh session with a new CSRF token (a login always gets a new one: no fixation)."""
        return Session(secrets.token_urlsafe(32), curator)

    def dump(self, session: Session) -> str:
        return self.serializer.dumps({"csrf": session.csrf, "curator": session.curator})

    def load(self, cookie: str | None) -> Session | None:
        """The session of ``cookie``; ``None`` if missing, forged, expired or malformed."""
        if not cookie:
            return None
        try:
            data: Any = self.serializer.loads(cookie, max_age=round(self.max_age_s))
        except BadSignature:  # SignatureExpired included
            return None
        if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
            return None
        return Session(data["csrf"], data.get("curator") is True)


def csrf_valid(session: Session | None, token: str | None) -> bool:
    """Whether ``token`` is the session's CSRF token (compared in constant time)."""
    return session is not None and token is not None and hmac.compare_digest(session.csrf, token)


class FailedLogins:
    """Failed logins per client address in a sliding window of ``window_s``; the clock is an argument."""

    def __init__(self, allowed: int, window_s: float) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.failures.get(address, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def locked(self, address: str, now: float) -> float:
        """Seconds until ``address`` may try again (0: it may now)."""
        times = self._recent(address, now)
        if len(times) < self.allowed:
            return 0.0
        return times[-self.allowed] + self.window_s - now

    def record(self, address: str, now: float) -> None:
        times = self._recent(address, now)
        times.append(now)
        self.failures[address] = times
        self.failures.move_to_end(address)
        while len(self.failures) > MAX_TRACKED_ADDRESSES:
            self.failures.popitem(last=False)
