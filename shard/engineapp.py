"""The matching engine as the replicated state machine's application.

Commands arrive as the JSON bytes a client sent; results are the events
(JSON-ready dicts) and aggregated level changes the replica publishes and
remembers in its session table.
"""

from __future__ import annotations

from typing import Any

import orjson

from clob.codec import encode_events
from clob.engine import Engine
from clob.events import Event
from shard.limits import live_order_refusal


class EngineApplication:
    """Adapter from the matching engine (``clob.engine.Engine``) to :class:`Application`.

    Commands are JSON; the result of a command is ``(events, level_changes)``
    with events as JSON-ready dicts and level changes as the engine's
    ``(market, side, price, total)`` tuples. Both are packed as MessagePack
    arrays, so what a client receives is the same as with lists; tuples cost
    no conversion per command, and once the collector has seen them it stops
    tracking them. A result restored from a snapshot holds lists instead:
    only the packed bytes, never the two forms, are compared.
    """

    def __init__(self, max_live_orders_per_user: int = 0) -> None:
        self.engine = Engine()
        self.per_user = max_live_orders_per_user  # 0: no cap (shard/limits.py)

    def apply(self, seq: int, command: bytes) -> Any:
        try:
            decoded: Any = orjson.loads(command)
        except orjson.JSONDecodeError:
            decoded = None  # the engine rejects a non-object command with an event
        engine = self.engine
        refusal = live_order_refusal(engine, decoded, seq, self.per_user)
        raw: list[Event] = engine.execute(decoded, seq) if refusal is None else [refusal]
        events = encode_events(raw, engine.markets)
        return events, engine.take_level_changes()

    def snapshot(self) -> bytes:
        return self.engine.snapshot()

    def restore(self, data: bytes) -> None:
        self.engine = Engine.restore(data)

    def digest(self) -> bytes:
        return self.engine.digest()
