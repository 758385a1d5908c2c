"""`clob replay`: numbering, garbage tolerance, the real CLI end to end."""

from __future__ import annotations

import io
import random
import subprocess
import sys
from pathlib import Path

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.replay import replay_lines
from clob.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
CLOB = ROOT / ".venv" / "bin" / "clob"

SCRIPT = b"""\
{"type":"create_market","market":"BTC-USD","tick_size":"0.01","lot_size":"0.001"}
{"type":"new_order","market":"BTC-USD","user":"alice","client_order_id":"a1","side":"sell","order_type":"limit","price":"100.25","qty":"1.5"}

{"type":"new_order","market":"BTC-USD","user":"bob","side":"buy","order_type":"market","qty":"2"}
this is not json
{"type":"book","market":"BTC-USD"}
"""


def replay_bytes(data: bytes) -> list[dict[str, object]]:
    out = io.BytesIO()
    replay_lines(io.BytesIO(data), out)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


def test_replay_numbers_non_blank_lines_and_rejects_garbage() -> None:
    rows = replay_bytes(SCRIPT)
    assert [(r["seq"], r["type"]) for r in rows] == [
        (1, "market_created"),
        (2, "accepted"),
        (3, "accepted"),
        (3, "fill"),
        (3, "cancelled"),
        (4, "rejected"),
        (5, "book"),
    ]
    assert rows[5]["reason"] == "bad_command"
    assert rows[4]["reason"] == "ioc" and rows[4]["remaining_qty"] in ("0.500", "0.5")
    assert rows[6]["bids"] == [] and rows[6]["asks"] == []


def test_replay_is_deterministic_byte_for_byte() -> None:
    outs = []
    for _ in range(2):
        out = io.BytesIO()
        replay_lines(io.BytesIO(SCRIPT), out)
        outs.append(out.getvalue())
    assert outs[0] == outs[1]


def garbage_line(rng: random.Random) -> bytes:
    choices: list[bytes] = [
        b"[]",
        b"null",
        b"42",
        b'"x"',
        b"{",
        b"\xff\xfe",
        b'{"type":"new_order"}',
        b'{"type":"new_order","market":"BTC-USD","user":"u","side":"buy","order_type":"limit",'
        b'"price":"1e5","qty":"1"}',
        b'{"type":"cancel","market":"BTC-USD","user":"u","order_id":99999999999999999999999}',
        b'{"type":"amend","market":"BTC-USD","user":"u","order_id":1,"qty":"-0"}',
        b'{"type":"fills","user":"u","limit":0}',
        b'{"type":"create_market","market":"BTC-USD","tick_size":"0.5","lot_size":"1"}',
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30))),
    ]
    return rng.choice(choices)


def test_garbage_lines_never_raise_and_never_change_state() -> None:
    rng = random.Random(3)
    engine = Engine()
    engine.execute(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "0.01", "lot_size": "1"}, 1
    )
    engine.execute(
        {"type": "new_order", "market": "BTC-USD", "user": "u", "side": "buy",
         "order_type": "limit", "price": "1", "qty": "1"}, 2,
    )  # fmt: skip
    before = engine.digest()
    for seq in range(3, 3000):
        line = garbage_line(rng)
        try:
            command: object = orjson.loads(line)
        except orjson.JSONDecodeError:
            command = line
        events = engine.execute(command, seq)
        assert len(events) == 1
        assert engine.encode(events[0])["type"] == "rejected"
    assert engine.digest() == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["new_order", "cancel", "amend", "cancel_all", "orders",
                                 "fills", "book", "create_market"]) | json_values,
        "market": st.sampled_from(["BTC-USD", "NOPE"]) | json_values,
        "user": st.sampled_from(["u", ""]) | json_values,
        "side": st.sampled_from(["buy", "sell"]) | json_values,
        "order_type": st.sampled_from(["limit", "market"]) | json_values,
        "price": st.sampled_from(["1", "0", "-1", "1.001", "x"]) | json_values,
        "qty": st.sampled_from(["1", "0", "0.5", "1e2"]) | json_values,
        "tif": st.sampled_from(["gtc", "ioc", "fok"]) | json_values,
        "post_only": json_values,
        "stp": json_values,
        "order_id": st.integers(-2, 3) | json_values,
        "client_order_id": json_values,
        "after": json_values,
        "limit": json_values,
        "depth": json_values,
        "tick_size": json_values,
        "lot_size": json_values,
    },
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(command=fields | json_values)
def test_arbitrary_json_never_raises(command: object) -> None:
    engine = Engine()
    engine.execute(
        {"type": "create_market", "market": "BTC-USD", "tick_size": "1", "lot_size": "1"}, 1
    )
    events = engine.execute(command, 2)
    encoded = [engine.encode(e) for e in events]
    orjson.dumps(encoded)
    for row in encoded:
        assert row["seq"] == 2


def test_real_cli_replays_a_file(tmp_path: Path) -> None:
    script = tmp_path / "in.jsonl"
    script.write_bytes(SCRIPT)
    done = subprocess.run(
        [str(CLOB), "replay", str(script)], capture_output=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [orjson.loads(line) for line in done.stdout.splitlines()] == replay_bytes(SCRIPT)


def test_real_cli_reads_stdin_and_dash() -> None:
    for args in (["replay"], ["replay", "-"]):
        done = subprocess.run(
            [sys.executable, "-c", "import cli.replay; from cli.apps import app; app()", *args],
            input=SCRIPT,
            capture_output=True,
            check=False,
            timeout=60,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 7


def test_real_cli_unreadable_input_exits_nonzero(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(CLOB), "replay", str(tmp_path / "missing.jsonl")],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert done.returncode != 0 and b"cannot read" in done.stderr
