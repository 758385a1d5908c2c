"""Test support: a topology of one market on 127.0.0.1 with free ports, written to TOML."""

from __future__ import annotations

from pathlib import Path

from config.ports import free_ports
from config.render import write_config
from config.schema import ClusterConfig, Durability, MarketConfig, ReplicaConfig, TimingConfig


def write_topology(
    directory: Path,
    *,
    replicas: int = 3,
    spares: int = 0,
    durability: Durability = "none",
    market: str = "BTC-USD",
    cluster_id: str = "test",
    metrics: bool = False,
) -> tuple[Path, ClusterConfig]:
    """A TOML topology for one market; returns its path and the loaded config."""
    total = replicas + spares
    ports = free_ports(total * 3)
    members = []
    for i in range(total):
        name = f"{market.lower()}-{i + 1}"
        members.append(
            ReplicaConfig(
                name=name,
                raft=f"127.0.0.1:{ports[3 * i]}",
                client=f"127.0.0.1:{ports[3 * i + 1]}",
                data_dir=str(directory / name),
                metrics=f"127.0.0.1:{ports[3 * i + 2]}" if metrics else None,
                join=i >= replicas,
            )
        )
    cluster = ClusterConfig(
        cluster_id=cluster_id,
        markets=(MarketConfig(market, "0.01", "0.001", tuple(members)),),
        durability=durability,
        timing=TimingConfig(tick_ms=10, election_ticks=20, heartbeat_ticks=2),
    )
    path = write_config(cluster, directory / "cluster.toml")
    return path, cluster
