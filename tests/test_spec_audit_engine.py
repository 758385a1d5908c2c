"""ENGINE.md, sentence by sentence, through ``clob replay``: the edge cases other tests miss.

Every case goes in as JSON-lines bytes and comes out as the decoded event
lines, the way an outside conformance test sees the engine.
"""

from __future__ import annotations

import io
import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.replay import replay_lines
from clob.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
Row = dict[str, Any]

MARKET = {"type": "create_market", "market": "M", "tick_size": "0.01", "lot_size": "0.001"}


def encode(line: Row | bytes) -> bytes:
    """A dict as one JSON line (integers of any size written exactly); bytes as they are."""
    if isinstance(line, bytes):
        return line
    return json.dumps(line, ensure_ascii=False).encode()


def replay(*lines: Row | bytes) -> list[Row]:
    """Replay ``lines`` (dicts are JSON-encoded, bytes go in as they are)."""
    data = b"\n".join(encode(line) for line in lines)
    out = io.BytesIO()
    replay_lines(io.BytesIO(data + b"\n"), out)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def last(*lines: Row | bytes) -> Row:
    """The last event of replaying ``lines``."""
    return replay(*lines)[-1]


def order(**fields: Any) -> Row:
    base: Row = {
        "type": "new_order",
        "market": "M",
        "user": "u",
        "side": "buy",
        "order_type": "limit",
        "price": "1.00",
        "qty": "1",
    }
    return {**base, **fields}


# ------------------------------------------------------------------ deviations fixed here


def test_long_well_formed_decimals_are_values_not_bad_command() -> None:
    """A decimal string is judged by its value however long it is: only a string that
    is not a plain decimal at all is ``bad_command``."""
    one = "1." + "0" * 200  # exactly 1, in 202 characters
    padded_two = "0" * 5000 + "2"  # 2, past CPython's 4300-digit int() limit
    created = last({**MARKET, "tick_size": "0" * 300 + "0.01", "lot_size": one})
    assert created["type"] == "market_created" and created["tick_size"] in ("0.01", "0.010")
    rows = replay(MARKET, order(price=one, qty=padded_two))
    assert rows[-1]["type"] == "accepted"
    assert (rows[-1]["price"], rows[-1]["qty"]) == ("1.00", "2.000")
    assert last(MARKET, order(qty="9" * 200))["reason"] == "invalid_qty"  # out of range
    assert last(MARKET, order(qty="0." + "0" * 200))["reason"] == "invalid_qty"  # zero
    assert last(MARKET, order(price="-" + "1" * 150))["reason"] == "invalid_price"
    assert last(MARKET, order(price="0." + "0" * 150 + "1"))["reason"] == "invalid_price"
    assert last(MARKET, order(qty="1" * 150 + "x"))["reason"] == "bad_command"
    assert last(MARKET, order(qty="1" * 150 + "e5"))["reason"] == "bad_command"
    amended = last(MARKET, order(), {"type": "amend", "market": "M", "user": "u", "order_id": 1,
                                     "qty": "0" * 200 + "3"})  # fmt: skip
    assert amended["type"] == "amended" and amended["qty"] == "3.000"


def test_integer_ids_beyond_64_bits_are_still_integers() -> None:
    """``"order_id": 18446744073709551616`` is a JSON integer: no such order, not a
    malformed command (the engine says so for that int; replay must not turn it into a
    float first)."""
    cancel = {"type": "cancel", "market": "M", "user": "u"}
    row = last(MARKET, {**cancel, "order_id": 2**64})
    assert row["reason"] == "unknown_order" and "order_id" not in row  # not echoable
    assert row["market"] == "M" and row["user"] == "u"
    assert last(MARKET, {**cancel, "order_id": -(2**70)})["reason"] == "unknown_order"
    assert last(MARKET, {**cancel, "order_id": 2**64 - 1})["order_id"] == 2**64 - 1
    book = last(MARKET, {"type": "book", "market": "M", "depth": 10**30})
    assert book["type"] == "book"
    fills = last(MARKET, {"type": "fills", "user": "u", "market": "M", "after": 10**30})
    assert fills["fills"] == [] and fills["next"] is None
    # a number written as a float is still not an integer id
    for text in (b"1.0", b"1e2", b"1E400"):
        line = b'{"type":"cancel","market":"M","user":"u","order_id":' + text + b"}"
        assert last(MARKET, line)["reason"] == "bad_command"
    limit = last(MARKET, {"type": "fills", "user": "u", "limit": 10**30})
    assert limit["reason"] == "bad_command"


def test_every_created_market_survives_a_snapshot() -> None:
    """A tick of 100 characters written without its leading zero (".000…1") used to be
    created although its stored form ("0.000…1", 101 characters) failed the snapshot's
    own check, so the state could be saved but not restored. A size whose shortest
    form is that long is now out of range, like a quantity of too many steps."""
    tiny = "0." + "0" * 97 + "1"  # 100 characters in its shortest form: fine
    engine = Engine()
    commands = [
        {**MARKET, "market": "A", "tick_size": "." + "0" * 98 + "1", "lot_size": "1"},
        {**MARKET, "market": "B", "tick_size": "1", "lot_size": "." + "0" * 99 + "1"},
        {**MARKET, "market": "C", "tick_size": tiny, "lot_size": "0" * 150 + "1"},
        order(market="C", price="0" + tiny, qty="1"),
    ]
    rows = [engine.encode(e) for seq, c in enumerate(commands, 1) for e in engine.execute(c, seq)]
    assert [(r["type"], r.get("reason")) for r in rows] == [
        ("rejected", "invalid_price"),
        ("rejected", "invalid_qty"),
        ("market_created", None),
        ("accepted", None),
    ]
    restored = Engine.restore(engine.snapshot())
    assert restored.digest() == engine.digest()
    assert restored.market_specs() == [("C", tiny, "1")]


def test_real_cli_answers_each_line_before_reading_the_next() -> None:
    """A caller that writes one command to the pipe and waits for its events gets them
    without closing its end first."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import cli.replay; from cli.apps import app; app()", "replay"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for seq, line in enumerate([orjson.dumps(MARKET), b'{"type":"book","market":"M"}'], 1):
            proc.stdin.write(line + b"\n")
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, f"no output for line {seq} while the input stays open"
            assert orjson.loads(proc.stdout.readline())["seq"] == seq
        proc.stdin.write(b'{"type":"book",')  # a last line without its newline
        proc.stdin.flush()
        proc.stdin.write(b'"market":"M"}')
        proc.stdin.close()
        assert orjson.loads(proc.stdout.read())["seq"] == 3
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        if not proc.stdin.closed:
            proc.stdin.close()


# ------------------------------------------------------------- conforming, newly covered


def test_seq_counts_non_blank_lines_whatever_they_hold() -> None:
    rows = replay(
        MARKET,
        b"",
        b"   \t ",
        b"\r",
        b"\xff\xfe{}",  # not UTF-8
        b"[1, 2]",
        b'"order"',
        b"null",
        b'{"type":"book","market":"M"}\r',
    )
    assert [(r["seq"], r["type"]) for r in rows] == [
        (1, "market_created"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "rejected"),
        (6, "book"),
    ]
    assert all(set(r) == {"type", "seq", "reason", "message"} for r in rows[1:5])
    assert {r["reason"] for r in rows[1:5]} == {"bad_command"}


@pytest.mark.parametrize(
    "text", ["1e3", "+1", " 1", "1 ", "1\n", "\u0661", "0x1", "", ".", "-", "1.2.3", "1,5"]
)
def test_malformed_decimal_strings_are_bad_command(text: str) -> None:
    assert last(MARKET, order(qty=text))["reason"] == "bad_command"
    assert last(MARKET, order(price=text))["reason"] == "bad_command"


@pytest.mark.parametrize(
    ("price", "qty", "shown"),
    [("1.", "1.", ("1.00", "1.000")), (".5", ".5", ("0.50", "0.500")),
     ("00001.50", "002", ("1.50", "2.000"))],
)  # fmt: skip
def test_plain_decimal_variants_are_read_by_value(
    price: str, qty: str, shown: tuple[str, str]
) -> None:
    row = last(MARKET, order(price=price, qty=qty))
    assert (row["type"], row["price"], row["qty"]) == ("accepted", *shown)


def test_zero_written_oddly_is_a_value_error() -> None:
    for text in ("-0", "0.000", "-0.0", "00"):
        assert last(MARKET, order(qty=text))["reason"] == "invalid_qty"
        assert last(MARKET, order(price=text))["reason"] == "invalid_price"


def test_rejected_echoes_only_well_typed_identifying_fields() -> None:
    row = last(MARKET, order(user=5, client_order_id=7, order_id="3"))
    assert set(row) == {"type", "seq", "reason", "message", "market"}
    row = last(MARKET, {"type": "cancel", "market": "M", "user": "u", "order_id": True})
    assert row["reason"] == "bad_command" and "order_id" not in row
    row = last(MARKET, {"type": "cancel", "market": "M", "user": "u", "client_order_id": ""})
    assert row["reason"] == "unknown_order" and row["client_order_id"] == ""
    row = last(MARKET, {"type": "book", "market": ["M"], "user": "u"})
    assert set(row) == {"type", "seq", "reason", "message", "user"}


def test_name_and_length_limits() -> None:
    for name, ok in [("A" * 32, True), ("A" * 33, False), ("-", True), ("0-9", True),
                     ("btc", False), ("", False), ("\u0410", False), ("A B", False)]:  # fmt: skip
        row = last({**MARKET, "market": name})
        assert (row["type"] == "market_created") is ok, name
    assert last(MARKET, order(user="é" * 64))["type"] == "accepted"  # characters, not bytes
    assert last(MARKET, order(user="u" * 65))["reason"] == "bad_command"
    assert last(MARKET, order(user=""))["reason"] == "bad_command"
    assert last(MARKET, order(client_order_id="c" * 64))["type"] == "accepted"
    assert last(MARKET, order(client_order_id="c" * 65))["reason"] == "bad_command"
    # an empty client_order_id is a real one: it collides, and it cancels
    rows = replay(
        MARKET,
        order(client_order_id=""),
        order(client_order_id=""),
        {"type": "cancel", "market": "M", "user": "u", "client_order_id": ""},
    )
    assert rows[2]["reason"] == "duplicate_client_order_id" and rows[2]["client_order_id"] == ""
    assert rows[3]["type"] == "cancelled" and rows[3]["order_id"] == 1


def test_market_order_tif_matrix() -> None:
    book = [MARKET, order(user="s", side="sell", qty="1")]
    market = order(order_type="market", qty="2")
    del market["price"]
    rows = replay(*book, market)
    assert [r["type"] for r in rows[2:]] == ["accepted", "fill", "cancelled"]
    assert rows[2]["tif"] == "ioc" and rows[2]["price"] is None and rows[4]["reason"] == "ioc"
    rows = replay(*book, {**market, "tif": "fok"})
    assert [(r["type"], r.get("reason")) for r in rows[2:]] == [
        ("accepted", None),
        ("cancelled", "fok"),
    ]
    assert rows[2]["tif"] == "fok" and rows[3]["remaining_qty"] in ("2.000", "2")
    assert last(*book, {**market, "tif": "gtc"})["reason"] == "invalid_tif"
    assert last(*book, {**market, "tif": "gtc", "qty": "0"})["reason"] == "invalid_qty"
    assert last(*book, {**market, "tif": "gtc", "price": "1.00"})["reason"] == "invalid_price"


def test_cancel_all_with_nothing_to_cancel_emits_nothing_and_keeps_numbering() -> None:
    rows = replay(MARKET, {"type": "cancel_all", "user": "nobody"}, {"type": "book", "market": "M"})
    assert [(r["seq"], r["type"]) for r in rows] == [(1, "market_created"), (3, "book")]


def test_fills_cursor_is_null_when_a_page_ends_exactly_at_the_last_fill() -> None:
    trades: list[Row | bytes] = [MARKET]
    for _ in range(2):
        trades += [order(user="s", side="sell"), order(user="b")]
    query = {"type": "fills", "user": "b", "market": "M", "limit": 2}
    assert last(*trades, query)["next"] is None
    first = last(*trades, {**query, "limit": 1})
    assert [f["trade_id"] for f in first["fills"]] == [1] and first["next"] == 1
    rest = last(*trades, {**query, "after": first["next"]})
    assert [f["trade_id"] for f in rest["fills"]] == [2] and rest["next"] is None
    for limit in (0, 1001, True, 1.5, "2"):
        assert last(*trades, {**query, "limit": limit})["reason"] == "bad_command"


def test_book_depth_bounds() -> None:
    levels = [MARKET, order(price="1.00"), order(price="2.00")]
    assert last(*levels, {"type": "book", "market": "M", "depth": 1})["bids"] == [["2.00", "1.000"]]
    for depth in (0, -1, True, 1.0, "1"):
        assert last(*levels, {"type": "book", "market": "M", "depth": depth})["reason"] == (
            "bad_command"
        )
    assert len(last(*levels, {"type": "book", "market": "M", "depth": 2**63})["bids"]) == 2


def test_amend_to_a_crossing_price_trades_then_rests_at_the_back() -> None:
    rows = replay(
        MARKET,
        order(user="s", side="sell", price="2.00", qty="1"),
        order(user="x", price="1.00", qty="1"),
        order(user="b", price="1.00", qty="3"),
        {"type": "amend", "market": "M", "user": "b", "order_id": 3, "price": "2.00"},
        order(user="y", price="2.00", qty="1"),
        order(user="s2", side="sell", price="2.00", qty="1"),
    )
    amend = [r for r in rows if r["seq"] == 5]
    assert [r["type"] for r in amend] == ["amended", "fill"]
    assert (amend[0]["price"], amend[0]["qty"]) == ("2.00", "3.000")
    assert amend[1]["taker_order_id"] == 3 and amend[1]["maker_order_id"] == 1
    # order 3 rests at 2.00 with 2 left, ahead of order 4 that came later
    assert rows[-1]["type"] == "fill" and rows[-1]["maker_order_id"] == 3
