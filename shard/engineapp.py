"""The matching engine as the replicated state machine's application.

Commands arrive as the JSON bytes a client sent; results are the events
(JSON-ready dicts) and aggregated level changes the replica publishes and
remembers in its session table. Beside the engine it keeps when each trade
happened (:mod:`shard.tradetimes`), which the ``fills`` query reports.
"""

from __future__ import annotations

from typing import Any

import msgpack
import orjson

from clob.codec import encode_events
from clob.engine import Engine
from clob.events import Accepted, Amended, Event
from shard.limits import live_order_refusal
from shard.tradetimes import TradeTimes

# An application snapshot starts with this, then MessagePack
# ``[engine snapshot, trade times]``. Older builds stored the bare engine
# snapshot (a MessagePack array, whose first byte is never "E").
_SNAPSHOT_MAGIC = b"EAPP1"


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
        self.trade_times = TradeTimes()
        self.now = 0  # the time of the entry being applied (set by the state machine)

    def stamp(self, now: int) -> None:
        """The commands that follow were sequenced at ``now`` (µs, leader's clock)."""
        self.now = now

    def apply(self, seq: int, command: bytes) -> Any:
        try:
            decoded: Any = orjson.loads(command)
        except orjson.JSONDecodeError:
            decoded = None  # the engine rejects a non-object command with an event
        engine = self.engine
        refusal = live_order_refusal(engine, decoded, seq, self.per_user)
        raw: list[Event] = engine.execute(decoded, seq) if refusal is None else [refusal]
        events = encode_events(raw, engine.markets)
        if len(raw) > 1:
            # Trades come only from a new order or an amend, after its accepted or amended
            # event, in that event's market.
            first = raw[0]
            if type(first) is Accepted or type(first) is Amended:
                name = first.market
                last_trade = engine.markets[name].next_trade_id - 1
                self.trade_times.note(name, last_trade, self.now)
        return events, engine.take_level_changes()

    def _note_trades(self, now: int) -> None:
        """Every market's trades not noted yet happened at ``now``."""
        note = self.trade_times.note
        for name, market in self.engine.markets.items():
            note(name, market.next_trade_id - 1, now)

    def query(self, query: Any, seq: int) -> list[dict[str, Any]]:
        """Answer a query (it changes nothing): the engine's events as JSON-ready dicts.

        A ``fills`` result also holds ``times``, each fill's time (µs since the
        epoch by its leader's clock, 0 when unknown), for merging markets.
        """
        engine = self.engine
        events = [engine.encode(e) for e in engine.execute(query, seq)]
        for event in events:
            if event.get("type") == "fills":
                time_of = self.trade_times.time_of
                event["times"] = [time_of(f["market"], f["trade_id"]) for f in event["fills"]]
        return events

    def snapshot(self) -> bytes:
        state = [self.engine.snapshot(), self.trade_times.to_plain()]
        packed: bytes = msgpack.packb(state, use_bin_type=True)
        return _SNAPSHOT_MAGIC + packed

    def restore(self, data: bytes) -> None:
        if data.startswith(_SNAPSHOT_MAGIC):
            engine_data, times = msgpack.unpackb(data[len(_SNAPSHOT_MAGIC) :], raw=False)
            self.engine = Engine.restore(engine_data)
            self.trade_times = TradeTimes.from_plain(times)
            return
        self.engine = Engine.restore(data)  # an older build's: trade times unknown (0)
        self.trade_times = TradeTimes()
        self._note_trades(0)

    def digest(self) -> bytes:
        return self.engine.digest()
