"""Many requests in flight on one connection: batched lanes and coalesced replies, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from gateway import metrics
from shard.node.api import CommandResult
from tests.gateway_harness import call, raw, recv, running_gateway, send

COUNT = 200


def _batches() -> float:
    """Batches the lanes have sent so far (the histogram's count)."""
    for metric in metrics.BATCHED.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return sample.value
    raise AssertionError("no batch count sample")


async def test_pipelined_orders_are_applied_and_answered_in_order(tmp_path: Path) -> None:
    batches_before = _batches()
    async with running_gateway(tmp_path) as gw, raw(gw.url) as ws:
        await call(ws, {"op": "auth", "id": 0, "api_key": gw.keys["alice"]})
        backend = gw.backends["BTC-USD"]
        original = backend.submit

        async def slow(command: dict[str, Any]) -> CommandResult:
            await trio.sleep(0.05)  # lone commands take a while, so the next ones queue up
            return await original(command)

        backend.submit = slow  # type: ignore[method-assign]
        for i in range(1, COUNT + 1):  # all sent before any reply is read
            order = {"market": "BTC-USD", "side": "buy", "qty": "0.001", "order_type": "limit"}
            order["price"] = f"{10 + i * 0.01:.2f}"
            await send(ws, {"op": "new_order", "id": i, "client_order_id": f"o{i}", **order})
            if i == COUNT // 2:  # a query in the middle sees exactly the orders before it
                await send(ws, {"op": "orders", "id": "q", "market": "BTC-USD"})
        replies = [await recv(ws) for _ in range(COUNT + 1)]
        orders = await call(ws, {"op": "orders", "id": "all", "market": "BTC-USD"})
    ids = [r["id"] for r in replies]
    half = COUNT // 2
    assert ids == [*range(1, half + 1), "q", *range(half + 1, COUNT + 1)]
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:3]
    seqs = [r["result"]["seq"] for r in replies if r["id"] != "q"]
    assert seqs == sorted(seqs) and len(set(seqs)) == COUNT  # applied in the order sent
    query = next(r for r in replies if r["id"] == "q")["result"]
    assert sorted(o["client_order_id"] for o in query["orders"]) == sorted(
        f"o{i}" for i in range(1, half + 1)
    )
    assert len(orders["result"]["orders"]) == COUNT
    assert _batches() > batches_before  # the lane did batch (else this tests nothing new)
