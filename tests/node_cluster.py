"""Test support: a topology of one market on 127.0.0.1 with free ports, written to TOML."""

from __future__ import annotations

import socket
from pathlib import Path

from config.load import load_config
from config.schema import ClusterConfig


def free_ports(count: int) -> list[int]:
    """Ports free right now (bound to 0 and released together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def write_topology(
    directory: Path,
    *,
    replicas: int = 3,
    spares: int = 0,
    durability: str = "none",
    market: str = "BTC-USD",
    cluster_id: str = "test",
    metrics: bool = False,
) -> tuple[Path, ClusterConfig]:
    """A TOML topology for one market; returns its path and the loaded config."""
    total = replicas + spares
    ports = free_ports(total * 3)
    lines = [
        f'cluster_id = "{cluster_id}"',
        f'durability = "{durability}"',
        "[timing]",
        "tick_ms = 10",
        "election_ticks = 20",
        "heartbeat_ticks = 2",
        "[[markets]]",
        f'name = "{market}"',
        'tick_size = "0.01"',
        'lot_size = "0.001"',
    ]
    for i in range(total):
        name = f"{market.lower()}-{i + 1}"
        lines += [
            "[[markets.replicas]]",
            f'name = "{name}"',
            f'raft = "127.0.0.1:{ports[3 * i]}"',
            f'client = "127.0.0.1:{ports[3 * i + 1]}"',
            f'data_dir = "{directory / name}"',
        ]
        if metrics:
            lines.append(f'metrics = "127.0.0.1:{ports[3 * i + 2]}"')
        if i >= replicas:
            lines.append("join = true")
    path = directory / "cluster.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, load_config(path)
