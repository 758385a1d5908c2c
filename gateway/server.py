"""Serving the WebSocket API: ``serve_gateway`` runs the feeds and accepts connections."""

from __future__ import annotations

import resource
import ssl
from functools import partial

import trio
from trio_websocket import (
    ConnectionClosed,
    Endpoint,
    WebSocketRequest,
    WebSocketServer,
    serve_websocket,
)

from gateway import metrics
from gateway.context import GatewayContext
from gateway.session import Session
from shard.observability import StructuredLogger, get_logger

# trio-websocket's own receive queue; our reader drains it continuously
WS_QUEUE = 16
# descriptors beyond one per client connection: replica links, logs, the metrics port,
# connections still in their handshake
DESCRIPTOR_MARGIN = 1024


def ensure_descriptors(needed: int, log: StructuredLogger) -> int:
    """Raise this process's open-file limit towards ``needed`` (as far as the hard limit
    allows) and return the limit now in force.

    Many systems start processes with a soft limit of 1,024 descriptors, far below the
    connections a gateway admits; past the limit ``accept`` fails and new clients
    wait in the kernel's backlog instead of being served or refused.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("raised the open-file limit", before=soft, now=target)
            soft = target
        if soft < needed:
            log.warning(
                "the open-file limit is below the connections this gateway admits",
                limit=soft,
                needed=needed,
                hint="raise the hard limit (ulimit -Hn) or lower max_connections",
            )
    return soft


async def serve_gateway(
    gateway: GatewayContext,
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Follow every market and serve clients on ``host:port`` until cancelled.

    With ``ssl_context`` (shard/node/tls.py ``gateway_context``) it serves wss://:
    trio-websocket does each TLS handshake in that connection's task, bounded by
    the handshake timeout, and a failed one closes that connection only.

    Reports the trio-websocket server (``.port`` is the bound port) through
    ``task_status`` once it accepts connections. Owns the market feeds and
    every connection: cancelling it closes them all.
    """
    log = get_logger("gateway.server", gateway=gateway.name)
    ensure_descriptors(gateway.settings.max_connections + DESCRIPTOR_MARGIN, log)
    async with trio.open_nursery() as nursery:
        for feed in gateway.feeds.values():
            await nursery.start(feed.run)
        nursery.start_soon(gateway.watch_keys)
        server = await nursery.start(
            partial(
                serve_websocket,
                partial(_handle, gateway),
                host,
                port,
                ssl_context,
                handler_nursery=nursery,
                message_queue_size=WS_QUEUE,
                connect_timeout=gateway.settings.handshake_timeout_seconds,
                # frames up to the hard limit are read and answered with too_large
                max_message_size=gateway.settings.hard_frame_bytes,
            )
        )
        log.info(
            "gateway listening",
            host=host,
            port=server.port,
            markets=len(gateway.feeds),
            scheme="ws" if ssl_context is None else "wss",
        )
        task_status.started(server)


async def _handle(gateway: GatewayContext, request: WebSocketRequest) -> None:
    """One connection, start to end. Nothing it raises may reach serve_websocket:
    an exception escaping a handler would take the whole server down."""
    log = get_logger("gateway.server", gateway=gateway.name)
    remote = request.remote
    address = str(remote.address) if isinstance(remote, Endpoint) else str(remote)
    if not gateway.admit(address):
        gateway.stats.refused += 1
        metrics.REFUSED.inc()
        if gateway.stats.refused % 1000 == 1:  # a flood of them must not flood the log
            log.warning("too many connections; refusing handshakes", remote=address,
                        refused_total=gateway.stats.refused)  # fmt: skip
        try:
            await request.reject(503, body=b"too many connections")
        except (ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("refused client went away first", error=repr(exc))
        finally:
            await _close_refused(request)
        return
    try:
        try:
            ws = await request.accept()
        except ConnectionClosed:
            return
        except Exception as exc:
            log.warning("handshake failed", error=repr(exc))
            return
        gateway.stats.connections += 1
        gateway.stats.accepted += 1
        metrics.CONNECTIONS.inc()
        try:
            await Session(ws, gateway).run()
        except Exception as exc:
            gateway.stats.handler_errors += 1
            log.error("connection handler failed", exc_info=exc)
        finally:
            gateway.stats.connections -= 1
            metrics.CONNECTIONS.dec()
    finally:
        gateway.release(address)


async def _close_refused(request: WebSocketRequest) -> None:
    """Close a refused connection's socket now.

    trio-websocket (0.12) marks a rejected connection closed without closing its
    socket, and its reader then waits for the client to hang up: a client that
    never does would keep a file descriptor and a task here however many times it
    is refused. The request exposes no public way to reach the socket, so this
    uses the library's own attributes (the version is pinned;
    tests/test_gateway_memory_bounds.py fails if they change). Closing it ends
    the reader, which sees the closed stream as an aborted connection.
    """
    stream = getattr(getattr(request, "_connection", None), "_stream", None)
    if isinstance(stream, trio.abc.AsyncResource):
        await stream.aclose()
