"""Client commands against a gateway: ``clob order|cancel|amend|orders|fills|book|markets|watch``.

Every command takes ``--url`` (default ws://127.0.0.1:8700/, or $CLOB_URL)
and ``--key`` (or $CLOB_API_KEY). A wss:// URL is verified against
``--ca-file`` (or $CLOB_CA_FILE), else the system trust store. Replies are
printed as JSON; a failed request prints the gateway's error and exits 1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio
import typer
from trio_websocket import ConnectionTimeout, HandshakeError

from cli.apps import app
from gateway.client import ClientError, GatewayClient, open_client
from gateway.client_streams import BookView, Trade
from shard.node.tls import HandshakeFailed, TlsError

DEFAULT_URL = "ws://127.0.0.1:8700/"
URL = typer.Option(DEFAULT_URL, "--url", envvar="CLOB_URL", help="Gateway WebSocket URL.")
KEY = typer.Option(None, "--key", envvar="CLOB_API_KEY", help="API key (or $CLOB_API_KEY).")
CA_FILE = typer.Option(
    None,
    "--ca-file",
    envvar="CLOB_CA_FILE",
    help="CA certificate (PEM) that a wss:// gateway's certificate must chain to"
    " (default: the system trust store).",
)


def _run(
    url: str,
    key: str | None,
    action: Callable[[GatewayClient], Awaitable[Any]],
    *,
    auth: bool,
    ca_file: str | None = None,
) -> None:
    if auth and not key:
        raise typer.BadParameter("an API key is needed: --key or $CLOB_API_KEY", param_hint="--key")
    if ca_file is not None and not url.lower().startswith("wss:"):
        raise typer.BadParameter(f"a CA file is for wss:// URLs, not {url}", param_hint="--ca-file")

    async def main() -> Any:
        async with open_client(url, api_key=key if auth else None, ca_file=ca_file) as client:
            return await action(client)

    try:
        result = trio.run(main)
    except ClientError as exc:
        typer.echo(orjson.dumps({"error": exc.code, "message": exc.message}).decode(), err=True)
        raise typer.Exit(1) from None
    except HandshakeFailed as exc:  # says why: e.g. the certificate is not trusted
        typer.echo(f"cannot reach the gateway at {url}: {exc}", err=True)
        raise typer.Exit(2) from None
    except TlsError as exc:
        raise typer.BadParameter(
            str(exc).removeprefix("--ca-file: "), param_hint="--ca-file"
        ) from None
    except (OSError, HandshakeError, trio.BrokenResourceError) as exc:
        # a failed TLS handshake (say, an untrusted certificate) is a BrokenResourceError
        typer.echo(unreachable(url, exc), err=True)
        raise typer.Exit(2) from None
    if result is not None:
        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


def unreachable(url: str, exc: BaseException) -> str:
    """What to tell a user whose client could not open ``url``."""
    hint = ""
    if isinstance(exc, ConnectionTimeout) and url.lower().startswith("ws:"):
        # a wss:// gateway never answers a plain opening: it looks like a silent gateway
        hint = " (no WebSocket answer: if the gateway serves wss://, use a wss:// URL)"
    return f"cannot reach the gateway at {url}: {exc.__cause__ or exc!r}{hint}"


@app.command()
def order(
    market: str = typer.Argument(..., help="Market, e.g. BTC-USD."),
    side: str = typer.Argument(..., help="buy or sell."),
    qty: str = typer.Argument(..., help="Quantity (decimal)."),
    price: str | None = typer.Argument(None, help="Limit price; omit for a market order."),
    tif: str | None = typer.Option(None, help="gtc, ioc or fok."),
    post_only: bool = typer.Option(False, help="Reject instead of taking liquidity."),
    client_order_id: str | None = typer.Option(None, help="Your own id for the order."),
    stp: str | None = typer.Option(None, help="cancel_taker, cancel_maker or cancel_both."),
    url: str = URL,
    key: str | None = KEY,
    ca_file: str | None = CA_FILE,
) -> None:
    """Place an order; prints the seq and the events it produced."""
    _run(
        url,
        key,
        lambda c: c.new_order(
            market,
            side,
            qty,
            price,
            tif=tif,
            post_only=post_only or None,
            client_order_id=client_order_id,
            stp=stp,
        ),
        auth=True,
        ca_file=ca_file,
    )


@app.command()
def cancel(
    market: str = typer.Argument(...),
    order_id: int | None = typer.Argument(None, help="Order id (or --client-order-id)."),
    client_order_id: str | None = typer.Option(None),
    url: str = URL,
    key: str | None = KEY,
    ca_file: str | None = CA_FILE,
) -> None:
    """Cancel one of your live orders."""
    _run(
        url,
        key,
        lambda c: c.cancel(market, order_id, client_order_id=client_order_id),
        auth=True,
        ca_file=ca_file,
    )


@app.command()
def amend(
    market: str = typer.Argument(...),
    order_id: int | None = typer.Argument(None, help="Order id (or --client-order-id)."),
    client_order_id: str | None = typer.Option(None),
    price: str | None = typer.Option(None, help="New price."),
    qty: str | None = typer.Option(None, help="New remaining quantity."),
    url: str = URL,
    key: str | None = KEY,
    ca_file: str | None = CA_FILE,
) -> None:
    """Change the price and/or remaining quantity of one of your live orders."""
    _run(
        url,
        key,
        lambda c: c.amend(market, order_id, client_order_id=client_order_id, price=price, qty=qty),
        auth=True,
        ca_file=ca_file,
    )


@app.command("cancel-all")
def cancel_all(
    market: str | None = typer.Argument(None, help="Only this market."),
    url: str = URL,
    key: str | None = KEY,
    ca_file: str | None = CA_FILE,
) -> None:
    """Cancel every live order of yours (in one market, or all)."""
    _run(url, key, lambda c: c.cancel_all(market), auth=True, ca_file=ca_file)


@app.command()
def orders(
    market: str | None = typer.Argument(None),
    url: str = URL,
    key: str | None = KEY,
    ca_file: str | None = CA_FILE,
) -> None:
    """Your live orders."""
    _run(url, key, lambda c: c.orders(market), auth=True, ca_file=ca_file)


@app.command()
def fills(
    market: str | None = typer.Argument(None),
    after: int | None = typer.Option(None, help="Trade id cursor (needs MARKET)."),
    limit: int | None = typer.Option(None, help="Page size, 1..1000."),
    url: str = URL,
    key: str | None = KEY,
    ca_file: str | None = CA_FILE,
) -> None:
    """Your fills, oldest first."""
    _run(url, key, lambda c: c.fills(market, after=after, limit=limit), auth=True, ca_file=ca_file)


@app.command()
def book(
    market: str = typer.Argument(...),
    depth: int | None = typer.Option(None),
    url: str = URL,
    ca_file: str | None = CA_FILE,
) -> None:
    """The aggregated book of a market."""
    _run(url, None, lambda c: c.book(market, depth), auth=False, ca_file=ca_file)


@app.command()
def markets(url: str = URL, ca_file: str | None = CA_FILE) -> None:
    """The markets the gateway serves."""
    _run(url, None, lambda c: c.markets(), auth=False, ca_file=ca_file)


@app.command()
def watch(
    market: str = typer.Argument(...),
    depth: int = typer.Option(10, help="Levels shown per side."),
    url: str = URL,
    ca_file: str | None = CA_FILE,
) -> None:
    """Show a market's live book and trades until Ctrl-C."""
    try:
        _run(url, None, lambda c: _watch(c, market, depth), auth=False, ca_file=ca_file)
    except KeyboardInterrupt:
        typer.echo("")


async def _watch(client: GatewayClient, market: str, depth: int) -> None:
    trades: list[Trade] = []
    latest: list[BookView] = []
    changed = trio.Event()

    async def follow_book() -> None:
        nonlocal changed
        async with client.book_stream(market) as stream:
            async for view in stream:
                latest[:] = [view]
                changed.set()

    async def follow_trades() -> None:
        nonlocal changed
        async with client.trades_stream(market) as stream:
            async for trade in stream:
                trades.append(trade)
                del trades[:-depth]
                changed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_book)
        nursery.start_soon(follow_trades)
        while True:
            await changed.wait()
            changed = trio.Event()
            if latest:
                typer.echo(render(latest[0], trades, depth))
            await trio.sleep(0.1)  # at most ten screens a second


def render(view: BookView, trades: list[Trade], depth: int) -> str:
    """One screen: asks (best at the bottom), bids (best at the top), recent trades."""
    lines = ["\x1b[2J\x1b[H" + f"{view.market}  seq {view.seq}", f"{'price':>14} {'qty':>14}"]
    for price, qty in reversed(view.asks[:depth]):
        lines.append(f"\x1b[31m{price:>14} {qty:>14}\x1b[0m")
    lines.append("-" * 29)
    for price, qty in view.bids[:depth]:
        lines.append(f"\x1b[32m{price:>14} {qty:>14}\x1b[0m")
    lines.append("")
    lines.append("recent trades")
    for trade in reversed(trades):
        lines.append(
            f"  #{trade.trade_id:<6} {trade.taker_side:<4} {trade.qty:>12} @ {trade.price}"
        )
    return "\n".join(lines)
