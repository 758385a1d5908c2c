"""The gateway's request and stream counters, through their cached label children."""

from __future__ import annotations

from prometheus_client import REGISTRY

from gateway import metrics


def _sample(name: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_answered_counts_by_op_and_code_and_observes_latency() -> None:
    ok = {"op": "metrics_probe", "code": "ok"}
    refused = {"op": "metrics_probe", "code": "rate_limited"}
    before = _sample("gateway_requests_total", ok), _sample("gateway_requests_total", refused)
    count = _sample("gateway_request_seconds_count", {"op": "metrics_probe"})
    for _ in range(3):
        metrics.answered("metrics_probe", "ok", 0.004)
    metrics.answered("metrics_probe", "rate_limited")  # an error: no latency
    assert _sample("gateway_requests_total", ok) == before[0] + 3
    assert _sample("gateway_requests_total", refused) == before[1] + 1
    assert _sample("gateway_request_seconds_count", {"op": "metrics_probe"}) == count + 3
    within = {"op": "metrics_probe", "le": "0.005"}
    assert _sample("gateway_request_seconds_bucket", within) >= 3


def test_streamed_counts_messages_per_channel() -> None:
    user = {"channel": "user"}
    before = _sample("gateway_stream_messages_total", user)
    metrics.streamed("user", 5)
    metrics.streamed("user")
    assert _sample("gateway_stream_messages_total", user) == before + 6
