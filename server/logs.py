"""Structured logging: one JSON object per line per event, never the contents of a message."""

import logging
import time
from typing import Any

import orjson

LOGGER_NAME = "xai"


class JsonLineFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", ...fields}`` on one line; tracebacks as one escaped string."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # which server process of a replica (PROCESSES > 1)
            "event": getattr(record, "event", None) or record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


# uvicorn's and websockets' INFO lines for each WebSocket handshake (their format strings, all on the
# "uvicorn.error" logger).  Any peer can open connections at will; the app logs each visitor's
# session once (visitor_connected, visitor_closed) and refusals rate-limited, so these only add volume.
PER_CONNECTION_MESSAGES = frozenset({
    '%s - "WebSocket %s" [accepted]', '%s - "WebSocket %s" 403', '%s - "WebSocket %s" %d',
    "connection open", "connection closed", "connection rejected (%d %s)", "HTTP response sent (%d %s)",
})


class PerConnectionFilter(logging.Filter):
    """Drop the per-handshake INFO lines of :data:`PER_CONNECTION_MESSAGES`; warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "uvicorn.error" and record.levelno <= logging.INFO
                    and isinstance(record.msg, str) and record.msg in PER_CONNECTION_MESSAGES)


def log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and the app: JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr",
               "filters": ["per_connection"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter}},
        "filters": {"per_connection": {"()": PerConnectionFilter}},
        "handlers": {"stderr": handler},
        "loggers": {
            LOGGER_NAME: {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # One line per HTTP request is noise next to the WebSocket events; warnings stay.
            "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` (numbers, names, codes: never client text)."""
    logging.getLogger(LOGGER_NAME).log(level, name, extra={"event": name, "fields": fields})


class RateLimitedEvent:
    """Log an event at most once per ``interval_s``, counting the ones left out.

    For events a peer can trigger at will (invalid UTF-8, binary frames), so
    that an attacker cannot flood the log.
    """

    def __init__(self, name: str, interval_s: float = 10.0, level: int = logging.WARNING) -> None:
        self.name = name
        self.interval_s = interval_s
        self.level = level
        self.last = -float("inf")
        self.suppressed = 0

    def __call__(self, **fields: Any) -> None:
        now = time.monotonic()
        if now - self.last < self.interval_s:
            self.suppressed += 1
            return
        event(self.name, self.level, suppressed_since_last=self.suppressed, **fields)
        self.last, self.suppressed = now, 0

