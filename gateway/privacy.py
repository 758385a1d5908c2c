"""What one user may see of an engine event: other users' names are removed from fills."""

from __future__ import annotations

from shard.node.api import Event

_NAMES = ("maker_user", "taker_user")


def redact(event: Event, user: str | None) -> Event:
    """``event`` as ``user`` may see it: a fill keeps ``maker_user``/``taker_user`` only
    when it is ``user`` (the key is dropped otherwise); other events are returned as is."""
    if event.get("type") != "fill":
        return event
    return {k: v for k, v in event.items() if k not in _NAMES or v == user}


def users_of(event: Event) -> tuple[str, ...]:
    """The users whose private stream ``event`` goes to."""
    kind = event.get("type")
    if kind == "fill":
        return tuple(u for u in (event.get("taker_user"), event.get("maker_user")) if u)
    if kind in ("accepted", "cancelled", "amended") and event.get("user"):
        return (event["user"],)
    return ()
