"""Stream checks: every subscription session equals the committed events it covers.

A user-stream session must carry, per market, exactly the committed events
that concern its user (own accepted, cancelled, amended, and fills on either
side) from its first to its last message, with other users' names hidden; a
trades-stream session every fill. Only the two ends of a session may hold
part of one command's events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from chaos.committed import CommittedLog, Violation, leaked_names, redact
from chaos.history import Event, Subscription

_STREAM_EVENT_TYPES = frozenset({"accepted", "fill", "cancelled", "amended"})


def _concerns(event: Event, user: str) -> bool:
    if event.get("type") not in _STREAM_EVENT_TYPES:
        return False
    if event.get("type") == "fill":
        return user in (event.get("maker_user"), event.get("taker_user"))
    return event.get("user") == user


def _trim_ends(got: list[tuple[int, Any]], want: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """``want`` less what a session may legitimately miss at its two ends.

    A command's events are separate stream messages, so a session that began
    or ended while one command's events were being delivered holds only the
    tail of its first seq and the head of its last seq.
    """
    first, last = got[0][0], got[-1][0]
    got_first = [g for g in got if g[0] == first]
    want_first = [w for w in want if w[0] == first]
    middle = [w for w in want if first < w[0] < last]
    if first == last:
        n = len(got_first)
        for start in range(len(want_first) - n + 1):
            if want_first[start : start + n] == got_first:
                return want_first[start : start + n]
        return want_first
    got_last = [g for g in got if g[0] == last]
    want_last = [w for w in want if w[0] == last]
    head = want_first[len(want_first) - len(got_first) :] if got_first else want_first
    return head + middle + want_last[: len(got_last)]


def _compare_stream(
    kind: str,
    market: str,
    sub: Subscription,
    got: list[tuple[int, Any]],
    want: list[tuple[int, Any]],
) -> Violation | None:
    if got == want:
        return None
    for i, (g, w) in enumerate(zip(got, want, strict=False)):
        if g != w:
            what = "gap: missing" if g in want[i:] else "mismatch: expected"
            return Violation(
                kind,
                market,
                f"{sub.channel} stream of {sub.process} ({sub.user}) {what} {w!r}, got {g!r}",
            )
    shorter = "missing" if len(got) < len(want) else "extra"
    extra = want[len(got)] if len(got) < len(want) else got[len(want)]
    return Violation(kind, market, f"{sub.channel} stream of {sub.process}: {shorter} {extra!r}")


def check_streams(
    subscriptions: Sequence[Subscription], logs: Mapping[str, CommittedLog]
) -> list[Violation]:
    """Each stream session equals the committed events from its first to its last message."""
    out: list[Violation] = []
    for sub in subscriptions:
        per_market: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        for message in sub.messages:
            market = str(message.get("market", sub.market))
            if sub.channel == "user":
                event = message.get("event", {})
                if leaked_names([event], sub.user):
                    out.append(
                        Violation(
                            "privacy",
                            market,
                            f"user stream of {sub.user!r} shows {leaked_names([event], sub.user)}",
                        )
                    )
                if event.get("type") in _STREAM_EVENT_TYPES:
                    per_market[market].append((int(message["seq"]), redact([event], sub.user)[0]))
            elif sub.channel == "trades" and message.get("type") == "trade":
                fields = ("seq", "trade_id", "price", "qty", "taker_side")
                per_market[market].append(
                    (int(message["seq"]), {k: message.get(k) for k in fields})
                )
        for market, got in per_market.items():
            log = logs.get(market)
            first, last = got[0][0], got[-1][0]
            if log is None or not (log.covers(first) and log.covers(last)):
                continue
            want: list[tuple[int, Any]] = []
            for seq in range(first, last + 1):
                for event in log.entries[seq].events:
                    if sub.channel == "user" and _concerns(event, sub.user):
                        want.append((seq, redact([event], sub.user)[0]))
                    elif sub.channel == "trades" and event.get("type") == "fill":
                        want.append(
                            (
                                seq,
                                {
                                    "seq": seq,
                                    "trade_id": event.get("trade_id"),
                                    "price": event.get("price"),
                                    "qty": event.get("qty"),
                                    "taker_side": event.get("taker_side"),
                                },
                            )
                        )
            violation = _compare_stream("stream", market, sub, got, _trim_ends(got, want))
            if violation is not None:
                out.append(violation)
    return out
