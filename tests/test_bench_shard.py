"""The pacing of ``clob bench shard``'s open loop: latency counts from each order's due time."""

from __future__ import annotations

from cli.bench_shard import orders_due


def test_the_first_order_is_due_at_once_and_then_one_per_period() -> None:
    rate = 50.0  # one order every 20 ms
    assert orders_due(0.0, rate) == 1
    assert orders_due(0.0199, rate) == 1
    assert orders_due(0.02, rate) == 2
    assert orders_due(0.9999, rate) == 50
    assert orders_due(1.0, rate) == 51


def test_no_order_is_released_before_its_due_time() -> None:
    # order k is due at k / rate: at any moment exactly the orders with k / rate <= t are out
    rate = 7.0
    for step in range(200):
        t = step / 100
        released = orders_due(t, rate)
        assert (released - 1) / rate <= t < released / rate
