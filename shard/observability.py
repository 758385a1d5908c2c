"""The one place servers configure logging and expose metrics.

Every long-running process (replica node, gateway, local cluster) calls
:func:`configure_logging` once and logs through :func:`get_logger`; records
are structured: a message plus ``key=value`` fields (or one JSON object per
line with ``json=True``). Metrics use prometheus-client and are served by
:func:`serve_metrics`.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
import prometheus_client

_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


class KeyValueFormatter(logging.Formatter):
    """``2026-11-29T08:00:00.123Z INFO shard.node elected term=3 node=btc-1``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        parts = [f"{ts}.{ms:03d}Z", record.levelname, record.name, record.getMessage()]
        for key, value in _fields(record).items():
            text = str(value)
            if " " in text or "=" in text or not text:
                text = orjson.dumps(text).decode()
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str = "INFO", *, json: bool = False, stream: Any = None) -> None:
    """Route the root logger to ``stream`` (stderr by default) in structured form."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class StructuredLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose keyword arguments become structured fields.

    ``log.info("elected", term=3)`` instead of ``extra={"term": 3}``.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        std = {k: kwargs.pop(k) for k in ("exc_info", "stack_info", "stacklevel") if k in kwargs}
        extra: dict[str, Any] = dict(self.extra or {})
        extra.update(kwargs)
        std["extra"] = extra
        return msg, std


def get_logger(name: str, **context: Any) -> StructuredLogger:
    """A structured logger; ``context`` fields are added to every record."""
    return StructuredLogger(logging.getLogger(name), context)


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` for the default Prometheus registry.

    prometheus-client serves from its own daemon thread; this is the one
    thread the project tolerates, since it only reads metric values.
    """
    prometheus_client.start_http_server(port, addr=host)
