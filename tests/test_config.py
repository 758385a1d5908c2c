"""Topology loading: the shipped files load, and every kind of mistake is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.load import ConfigError, load_config, parse_address

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
cluster_id = "t"
[[markets]]
name = "BTC-USD"
tick_size = "0.01"
lot_size = "0.001"
[[markets.replicas]]
name = "a"
raft = "127.0.0.1:7001"
client = "127.0.0.1:7002"
data_dir = "d/a"
[[markets.replicas]]
name = "b"
raft = "127.0.0.1:7003"
client = "127.0.0.1:7004"
data_dir = "d/b"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_local_topology() -> None:
    cluster = load_config(ROOT / "config" / "local.toml")
    assert [m.name for m in cluster.markets] == ["BTC-USD", "ETH-USD"]
    btc = cluster.market("BTC-USD")
    eth = cluster.market("ETH-USD")
    assert btc is not None and eth is not None
    assert (btc.tick_size, btc.lot_size) == ("0.01", "0.001")
    assert (eth.tick_size, eth.lot_size) == ("0.01", "0.01")
    assert len(btc.initial_voters()) == 3 and len(eth.initial_voters()) == 3
    for market in cluster.markets:
        for replica in market.replicas:
            assert replica.raft.startswith("127.0.0.1:")
            assert replica.data_dir.startswith("var/local/")
    assert [(g.name, g.listen) for g in cluster.gateways] == [
        ("gw-1", "127.0.0.1:8700"),
        ("gw-2", "127.0.0.1:8701"),
    ]
    assert cluster.durability == "fsync"


def test_three_machines_example() -> None:
    cluster = load_config(ROOT / "config" / "three-machines.toml")
    btc = cluster.market("BTC-USD")
    assert btc is not None
    assert btc.initial_voters() == ("btc-usd-a", "btc-usd-b", "btc-usd-c")
    found = cluster.replica("btc-usd-d")
    assert found is not None and found[1].join


def test_good_minimal(tmp_path: Path) -> None:
    cluster = load_config(write(tmp_path, GOOD))
    assert cluster.timing.tick_ms == 20
    assert cluster.replica("b") is not None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_not_toml(tmp_path: Path) -> None:
    assert "not valid TOML" in problems(tmp_path, "cluster_id = ")[0][1]


def test_unknown_key_is_named(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace('data_dir = "d/b"', 'data_dir = "d/b"\nfsync = 1'))
    assert found[0][0] == "markets[0].replicas[1]"
    assert "fsync" in found[0][1]


def test_float_decimal_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace('tick_size = "0.01"', "tick_size = 0.01"))
    assert found == [("markets[0].tick_size", found[0][1])]
    assert "string" in found[0][1]


def test_bad_durability(tmp_path: Path) -> None:
    found = problems(tmp_path, 'durability = "fsnyc"\n' + GOOD)
    assert [path for path, _ in found] == ["durability"]


def test_duplicate_replica_name(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace('name = "b"', 'name = "a"'))
    assert found == [("markets[0].replicas[1].name", found[0][1])]
    assert "duplicate replica name 'a'" in found[0][1]


def test_duplicate_address_across_kinds(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("127.0.0.1:7004", "127.0.0.1:7001"))
    assert found[0][0] == "markets[0].replicas[1].client"
    assert "markets[0].replicas[0].raft" in found[0][1]


def test_bad_address(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD.replace("127.0.0.1:7004", "localhost"))
    assert found[0][0] == "markets[0].replicas[1].client"


def test_bad_market(tmp_path: Path) -> None:
    text = GOOD.replace('name = "BTC-USD"', 'name = "btc usd"').replace('"0.001"', '"-1"')
    paths = [path for path, _ in problems(tmp_path, text)]
    assert paths == ["markets[0].name", "markets[0].lot_size"]


def test_all_join_refused(tmp_path: Path) -> None:
    text = GOOD.replace('data_dir = "d/a"', 'data_dir = "d/a"\njoin = true').replace(
        'data_dir = "d/b"', 'data_dir = "d/b"\njoin = true'
    )
    assert problems(tmp_path, text)[0][0] == "markets[0].replicas"


def test_timing_checked(tmp_path: Path) -> None:
    found = problems(tmp_path, GOOD + "[timing]\nheartbeat_ticks = 40\n")
    assert found[0][0] == "timing.heartbeat_ticks"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9", ("::1", 9)), ("host:65535", ("host", 65535))],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["host", ":80", "host:0", "host:70000", "host:x"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)
