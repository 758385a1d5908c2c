"""The order of a ``fills`` query without a market: the order the trades happened.

ENGINE.md lists a user's fills "oldest first (in the order they happened,
across markets)". The history gives each trade a real-time window: it was
made while the command that took liquidity was being applied, so between
that command's invocation and its acknowledgement (a fill in a command's
reply was made by that command). When one trade's command was acknowledged
before another trade's command was sent, the first happened first, and every
``fills`` result listing both must list it first. Within a market the trade
ids must ascend. Trades whose command has no acknowledged window (its
outcome is unknown, or it came from before the run) are checked only within
their market.
"""

from __future__ import annotations

from collections.abc import Sequence

from chaos.committed import Violation
from chaos.history import Operation

# A fills query that names no market is recorded under this market name.
ALL_MARKETS = "*"

Trade = tuple[str, int]  # (market, trade id)


def _trade_windows(ops: Sequence[Operation]) -> dict[Trade, tuple[int, int]]:
    """Each trade made by an acknowledged command: (invoked, acknowledged) in ns."""
    windows: dict[Trade, tuple[int, int]] = {}
    for op in ops:
        if op.outcome != "ok" or not op.is_command:
            continue
        for event in op.events:
            if event.get("type") == "fill":
                trade = (str(event.get("market")), int(event.get("trade_id", 0)))
                windows[trade] = (op.invoke_ns, op.complete_ns)
    return windows


def check_fills_order(ops: Sequence[Operation]) -> list[Violation]:
    """Every ``fills`` result without a market lists trades in the order they happened."""
    windows = _trade_windows(ops)
    out: list[Violation] = []
    for op in ops:
        if op.op != "fills" or op.market != ALL_MARKETS or op.outcome != "ok" or not op.events:
            continue
        trades = [(str(f["market"]), int(f["trade_id"])) for f in op.events[0].get("fills", [])]
        last: dict[str, int] = {}
        for market, trade_id in trades:
            if trade_id <= last.get(market, 0):
                out.append(
                    Violation(
                        "fills_order",
                        market,
                        f"fills of {op.user!r}: trade {trade_id} listed after {last[market]}",
                        (op.op_id,),
                    )
                )
            last[market] = trade_id
        for i, earlier in enumerate(trades):
            listed_first = windows.get(earlier)
            if listed_first is None:
                continue
            for later in trades[i + 1 :]:
                listed_later = windows.get(later)
                # the later-listed trade was acknowledged before the earlier one was sent
                if listed_later is not None and listed_later[1] < listed_first[0]:
                    out.append(
                        Violation(
                            "fills_order",
                            None,
                            f"fills of {op.user!r}: {later} was acknowledged before {earlier} "
                            f"was sent, but is listed after it",
                            (op.op_id,),
                        )
                    )
    return out
