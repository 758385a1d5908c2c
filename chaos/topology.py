"""A local chaos topology: markets x replicas + gateways on free 127.0.0.1 ports.

The cluster is described twice. The *real* configuration (real addresses)
is what the gateways, :class:`shard.node.client.ShardClient` and the checker
use. Each replica additionally gets its *own* configuration file in which
the Raft address of every peer is the proxy of the link ``self -> peer``
(:class:`chaos.proxy.ProxyMesh`); its own entry keeps its real address,
which is where it listens. So every Raft byte crosses a proxy that the fault
schedule controls, while clients reach the replicas directly.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from pathlib import Path

import attrs

from config.load import load_config, parse_address
from config.schema import ClusterConfig, GatewayConfig, MarketConfig, ReplicaConfig, TimingConfig

# (name, tick_size, lot_size)
DEFAULT_MARKETS: tuple[tuple[str, str, str], ...] = (
    ("BTC-USD", "0.01", "0.001"),
    ("ETH-USD", "0.01", "0.01"),
)


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (held open together so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def build_cluster(
    root: Path,
    *,
    markets: Iterable[tuple[str, str, str]] = DEFAULT_MARKETS,
    replicas: int = 3,
    gateways: int = 2,
    durability: str = "fsync",
    timing: TimingConfig | None = None,
) -> ClusterConfig:
    """The real configuration, data directories under ``root``."""
    specs = list(markets)
    ports = iter(free_ports(len(specs) * replicas * 2 + gateways))
    market_configs = []
    for name, tick, lot in specs:
        members = tuple(
            ReplicaConfig(
                name=f"{name.lower()}-{i}",
                raft=f"127.0.0.1:{next(ports)}",
                client=f"127.0.0.1:{next(ports)}",
                data_dir=str(root / "data" / f"{name.lower()}-{i}"),
            )
            for i in range(1, replicas + 1)
        )
        market_configs.append(MarketConfig(name, tick, lot, members))
    return ClusterConfig(
        cluster_id="clob-chaos",
        markets=tuple(market_configs),
        gateways=tuple(
            GatewayConfig(name=f"gw-{i}", listen=f"127.0.0.1:{next(ports)}")
            for i in range(1, gateways + 1)
        ),
        durability="none" if durability == "none" else "fsync",
        keys_file=str(root / "keys.json"),
        timing=timing or TimingConfig(),
    )


def with_peer_addresses(
    cluster: ClusterConfig, replica: str, peer_address: Callable[[str, str], str]
) -> ClusterConfig:
    """``cluster`` as ``replica`` must see it: peers' Raft addresses from ``peer_address``."""
    found = cluster.replica(replica)
    assert found is not None, replica
    market, _ = found
    members = tuple(
        r if r.name == replica else attrs.evolve(r, raft=peer_address(replica, r.name))
        for r in market.replicas
    )
    markets = tuple(
        attrs.evolve(m, replicas=members) if m.name == market.name else m for m in cluster.markets
    )
    return attrs.evolve(cluster, markets=markets)


def _toml_str(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_toml(cluster: ClusterConfig) -> str:
    """The TOML text that :func:`config.load.load_config` reads back as ``cluster``."""
    lines = [
        f"cluster_id = {_toml_str(cluster.cluster_id)}",
        f"durability = {_toml_str(cluster.durability)}",
        f"keys_file = {_toml_str(cluster.keys_file)}",
        "",
        "[timing]",
        f"tick_ms = {cluster.timing.tick_ms}",
        f"election_ticks = {cluster.timing.election_ticks}",
        f"heartbeat_ticks = {cluster.timing.heartbeat_ticks}",
    ]
    for market in cluster.markets:
        lines += [
            "",
            "[[markets]]",
            f"name = {_toml_str(market.name)}",
            f"tick_size = {_toml_str(market.tick_size)}",
            f"lot_size = {_toml_str(market.lot_size)}",
        ]
        for r in market.replicas:
            lines += [
                "",
                "[[markets.replicas]]",
                f"name = {_toml_str(r.name)}",
                f"raft = {_toml_str(r.raft)}",
                f"client = {_toml_str(r.client)}",
                f"data_dir = {_toml_str(r.data_dir)}",
            ]
            if r.metrics is not None:
                lines.append(f"metrics = {_toml_str(r.metrics)}")
            if r.join:
                lines.append("join = true")
    for gateway in cluster.gateways:
        lines += [
            "",
            "[[gateways]]",
            f"name = {_toml_str(gateway.name)}",
            f"listen = {_toml_str(gateway.listen)}",
        ]
        if gateway.metrics is not None:
            lines.append(f"metrics = {_toml_str(gateway.metrics)}")
    return "\n".join(lines) + "\n"


def write_config(cluster: ClusterConfig, path: Path) -> Path:
    """Write ``cluster`` and check that it loads back unchanged."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_toml(cluster))
    loaded = load_config(path)
    assert loaded == cluster, (loaded, cluster)
    return path


def raft_addresses(market: MarketConfig) -> dict[str, tuple[str, int]]:
    return {r.name: parse_address(r.raft) for r in market.replicas}
