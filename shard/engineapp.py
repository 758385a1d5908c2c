"""The matching engine as the replicated state machine's application.

Commands arrive as the JSON bytes a client sent; results are the events
(JSON-ready dicts) and aggregated level changes the replica publishes and
remembers in its session table.
"""

from __future__ import annotations

from typing import Any

import orjson

from clob.engine import Engine


class EngineApplication:
    """Adapter from the matching engine (``clob.engine.Engine``) to :class:`Application`.

    Commands are JSON; the result of a command is ``[events, level_changes]``
    with events as JSON-ready dicts and level changes as 4-element lists
    (lists rather than tuples, so a result restored from a snapshot compares
    equal to a fresh one).
    """

    def __init__(self) -> None:
        self.engine = Engine()

    def apply(self, seq: int, command: bytes) -> Any:
        try:
            decoded: Any = orjson.loads(command)
        except orjson.JSONDecodeError:
            decoded = None  # the engine rejects a non-object command with an event
        engine = self.engine
        events = engine.execute(decoded, seq)
        rows = list(map(engine.encode, events))
        levels = list(map(list, engine.take_level_changes()))
        return [rows, levels]

    def snapshot(self) -> bytes:
        return self.engine.snapshot()

    def restore(self, data: bytes) -> None:
        self.engine = Engine.restore(data)

    def digest(self) -> bytes:
        return self.engine.digest()
