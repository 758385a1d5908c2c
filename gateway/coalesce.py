"""Writing several queued WebSocket messages to a client in one socket write.

``WebSocketConnection.send_message`` frames one message and writes it with
one ``send_all`` under the connection's stream lock: a system call, a lock
and several trio checkpoints per reply, which was a fifth of the gateway's
CPU under load. When a connection's outbox holds several messages,
:func:`send_messages` frames each exactly as ``send_message`` would (wsproto
does the framing) and writes them all at once, under the same lock, with the
same error handling. It reaches into trio-websocket's connection (pinned at
0.12.2 in pyproject.toml); :func:`supported` says whether the attributes it
needs are there, and the sender falls back to one ``send_message`` per
message when they are not.
"""

from __future__ import annotations

from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection
from wsproto.events import TextMessage

_NEEDED = ("_close_reason", "_wsproto", "_stream_lock", "_stream", "_abort_web_socket")


def supported(ws: WebSocketConnection) -> bool:
    """Whether ``ws`` has the internals :func:`send_messages` relies on."""
    return all(hasattr(ws, name) for name in _NEEDED)


async def send_messages(ws: WebSocketConnection, messages: list[str]) -> None:
    """Send text ``messages`` in order as separate WebSocket messages, in one write.

    Raises :class:`ConnectionClosed` as ``send_message`` does.
    """
    conn: Any = ws  # the private attributes below are not in trio-websocket's type hints
    if conn._close_reason:
        raise ConnectionClosed(conn._close_reason)
    wsproto = conn._wsproto
    data = b"".join([wsproto.send(TextMessage(data=message)) for message in messages])
    async with conn._stream_lock:
        try:
            await conn._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await conn._abort_web_socket()
            raise ConnectionClosed(conn._close_reason) from None
