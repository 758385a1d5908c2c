"""The gateway's documented limits, in one place (see docs/protocol.md).

Every number a client can run into lives here so the documentation, the
server and the tests agree; tests shrink some of them to stay fast.
"""

from __future__ import annotations

import attrs

# A frame above MAX_FRAME_BYTES is answered with ``too_large``; one above
# HARD_FRAME_BYTES is not even buffered: the socket is closed with code 1009.
MAX_FRAME_BYTES = 64 * 1024
# 1 MiB, not more: a connection may hold a half-sent frame as long as it answers pings
HARD_FRAME_BYTES = 1024 * 1024


@attrs.frozen
class GatewaySettings:
    """Per-gateway limits; the defaults are the documented ones."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    hard_frame_bytes: int = HARD_FRAME_BYTES
    # token bucket per connection: every frame costs one token
    rate_per_second: float = 1000.0
    rate_burst: float = 2000.0
    # requests accepted but not yet answered, per connection and market
    max_pending_per_market: int = 2048
    # messages queued for one connection (replies and stream messages together), and
    # the characters they may hold together (a str takes at least a byte per character)
    outbound_buffer: int = 4096
    outbound_buffer_chars: int = 16 * 1024 * 1024
    # how long a slow consumer gets to receive its slow_consumer notice
    slow_consumer_grace_seconds: float = 2.0
    # WebSocket ping period, and the silence after which a connection is dropped
    ping_interval_seconds: float = 15.0
    idle_timeout_seconds: float = 60.0
    # bound on one backend call; a command past it gets ``timeout``
    request_timeout_seconds: float = 10.0
    # how often the keys file is checked for revoked keys (their connections are closed)
    keys_poll_seconds: float = 1.0
    # open connections per gateway and per remote address; past them a handshake is
    # refused with HTTP 503 (each connection may hold up to the buffers above)
    max_connections: int = 10_000
    max_connections_per_address: int = 1_000
    # a TCP connection that has not completed its WebSocket handshake by then is closed
    # (it is not counted in the caps above until it has)
    handshake_timeout_seconds: float = 10.0
    # messages buffered between one market's upstream subscription and its fan-out
    feed_buffer: int = 10_000
