"""`clob bench shard` and `clob bench gateway`: open-loop pacing, reported CPU ceilings."""

from __future__ import annotations

from cli.bench_gateway import gateway_ceiling
from cli.bench_shard import cpu_ceilings, orders_due


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


def test_cpu_ceilings_divide_the_cores_by_the_cost_per_order() -> None:
    # 100 us of replica CPU per order on 2 cores: 20,000 orders/s at most; a leader
    # at 40 us on a core of its own: 25,000
    ceilings = cpu_ceilings(100.0, 40.0, 2)
    assert round(ceilings["ceiling_shared_cores"]) == 20_000
    assert round(ceilings["ceiling_own_cores"]) == 25_000
    # a cheaper order raises both; more cores raise only the shared one
    cheaper = cpu_ceilings(50.0, 20.0, 2)
    assert cheaper["ceiling_shared_cores"] > ceilings["ceiling_shared_cores"]
    assert cheaper["ceiling_own_cores"] > ceilings["ceiling_own_cores"]
    more = cpu_ceilings(100.0, 40.0, 8)
    assert more["ceiling_shared_cores"] == 4 * ceilings["ceiling_shared_cores"]
    assert more["ceiling_own_cores"] == ceilings["ceiling_own_cores"]


def test_gateway_ceiling_is_one_core_over_the_gateway_cost_per_order() -> None:
    assert gateway_ceiling({"gateways": 500.0, "replicas": 700.0}) == 2_000
    # the replicas' and the load client's CPU do not limit one gateway process
    assert gateway_ceiling({"gateways": 250.0, "replicas": 9_999.0}) == 4_000
    assert gateway_ceiling({"replicas": 700.0}) is None
    assert gateway_ceiling({"gateways": 0.0}) is None
