"""The typed command builders produce JSON the engine accepts."""

from __future__ import annotations

from clob.commands import (
    Amend,
    BookQuery,
    Cancel,
    CancelAll,
    CreateMarket,
    FillsQuery,
    NewOrder,
    OrdersQuery,
    to_json,
)
from clob.engine import Engine


def test_to_json_tags_and_omits_absent_fields() -> None:
    assert to_json(NewOrder(market="M", user="u", side="buy", qty="1", price="2")) == {
        "type": "new_order",
        "market": "M",
        "user": "u",
        "side": "buy",
        "qty": "1",
        "order_type": "limit",
        "price": "2",
    }
    assert to_json(CancelAll(user="u")) == {"type": "cancel_all", "user": "u"}


def test_every_command_round_trips_through_the_engine() -> None:
    engine = Engine()
    commands = [
        CreateMarket(market="M", tick_size="0.5", lot_size="1"),
        NewOrder(market="M", user="u", side="buy", qty="2", price="10", client_order_id="c"),
        NewOrder(market="M", user="v", side="sell", qty="1", order_type="market", tif="fok"),
        Amend(market="M", user="u", client_order_id="c", price="9.5"),
        OrdersQuery(user="u"),
        FillsQuery(user="u", market="M", limit=5),
        BookQuery(market="M", depth=3),
        Cancel(market="M", user="u", order_id=1),
        CancelAll(user="u", market="M"),
    ]
    kinds = []
    for seq, command in enumerate(commands, 1):
        kinds += [engine.encode(e)["type"] for e in engine.execute(to_json(command), seq)]
    assert "rejected" not in kinds
    assert kinds == [
        "market_created",
        "accepted",
        "accepted",
        "fill",
        "amended",
        "orders",
        "fills",
        "book",
        "cancelled",
    ]
