"""The gateway's Prometheus metrics (served by shard.observability.serve_metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge("gateway_connections", "Open client connections.")
REQUESTS = Counter(
    "gateway_requests_total", "Requests answered, by op and outcome.", ["op", "code"]
)
LATENCY = Histogram(
    "gateway_request_seconds",
    "Time from a request's arrival to its reply being queued, by op.",
    ["op"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
STREAM_MESSAGES = Counter(
    "gateway_stream_messages_total", "Stream messages queued to clients.", ["channel"]
)
SLOW_CONSUMERS = Counter("gateway_slow_consumers_total", "Connections dropped as slow consumers.")
REFUSED = Counter("gateway_refused_connections_total", "Handshakes refused by the connection caps.")
BATCHED = Histogram(
    "gateway_lane_batch_commands",
    "Commands a lane sent to its market as one ordered batch (batches of 2 or more).",
    buckets=(2, 4, 8, 16, 32, 64),
)

# ``labels(...)`` costs about 10 us here (a lock, a tuple, a dict lookup, argument
# checks); requests and stream messages reuse each label set's child instead.
_REQUEST_CHILDREN: dict[tuple[str, str], Any] = {}
_LATENCY_CHILDREN: dict[str, Any] = {}
_STREAM_CHILDREN: dict[str, Any] = {}


def answered(op: str, code: str, seconds: float | None = None) -> None:
    """Count one request answered with ``code`` and, when given, observe its latency."""
    child = _REQUEST_CHILDREN.get((op, code))
    if child is None:
        child = _REQUEST_CHILDREN[op, code] = REQUESTS.labels(op, code)
    child.inc()
    if seconds is not None:
        latency = _LATENCY_CHILDREN.get(op)
        if latency is None:
            latency = _LATENCY_CHILDREN[op] = LATENCY.labels(op)
        latency.observe(seconds)


def streamed(channel: str, messages: int = 1) -> None:
    """Count ``messages`` stream messages queued on ``channel``."""
    child = _STREAM_CHILDREN.get(channel)
    if child is None:
        child = _STREAM_CHILDREN[channel] = STREAM_MESSAGES.labels(channel)
    child.inc(messages)
