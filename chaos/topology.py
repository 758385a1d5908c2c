"""A local chaos topology: markets x replicas + gateways on free 127.0.0.1 ports.

The cluster is described twice. The *real* configuration (real addresses)
is what the gateways, :class:`shard.node.client.ShardClient` and the checker
use. Each replica additionally gets its *own* configuration file in which
the Raft address of every peer is the proxy of the link ``self -> peer``
(:class:`chaos.proxy.ProxyMesh`); its own entry keeps its real address,
which is where it listens. So every Raft byte crosses a proxy that the fault
schedule controls, while clients reach the replicas directly.

A market may also list *spares* (``join = true``, named after the initial
replicas: ``btc-usd-4``, ``btc-usd-5``, ...): not members at first, started
by the ``replace_follower`` fault, which adds one to the group and removes a
follower. Every configuration lists them from the start, with their links in
the market's proxy mesh, because a replica reads its configuration only
when it starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import attrs

from cli.certs import create_certificates, with_certificates
from config.load import parse_address
from config.ports import free_ports
from config.schema import ClusterConfig, GatewayConfig, MarketConfig, ReplicaConfig, TimingConfig
from config.secret import create_secret

# (name, tick_size, lot_size)
DEFAULT_MARKETS: tuple[tuple[str, str, str], ...] = (
    ("BTC-USD", "0.01", "0.001"),
    ("ETH-USD", "0.01", "0.01"),
)


def build_cluster(
    root: Path,
    *,
    markets: Iterable[tuple[str, str, str]] = DEFAULT_MARKETS,
    replicas: int = 3,
    gateways: int = 2,
    durability: str = "fsync",
    timing: TimingConfig | None = None,
    secret: bool = False,
    spares: Mapping[str, int] | None = None,
    tls: bool = False,
) -> ClusterConfig:
    """The real configuration, data directories under ``root``; with ``secret``, a cluster
    secret file there too, so that every connection to a replica must prove it; with
    ``tls``, a cluster CA and every certificate under ``root/tls`` and TLS on (mutual TLS
    on the replica links, wss:// at the gateways).

    ``spares``: market -> how many spare replicas (``join = true``) to list after its
    ``replicas`` initial ones."""
    specs = list(markets)
    extra = dict(spares or {})
    secret_file = root / "cluster.secret"
    if secret:
        create_secret(secret_file)
    total = sum(replicas + extra.get(name, 0) for name, _, _ in specs)
    ports = iter(free_ports(total * 2 + gateways))
    market_configs = []
    for name, tick, lot in specs:
        members = tuple(
            ReplicaConfig(
                name=f"{name.lower()}-{i}",
                raft=f"127.0.0.1:{next(ports)}",
                client=f"127.0.0.1:{next(ports)}",
                data_dir=str(root / "data" / f"{name.lower()}-{i}"),
                join=i > replicas,
            )
            for i in range(1, replicas + extra.get(name, 0) + 1)
        )
        market_configs.append(MarketConfig(name, tick, lot, members))
    cluster = ClusterConfig(
        cluster_id="clob-chaos",
        markets=tuple(market_configs),
        gateways=tuple(
            GatewayConfig(name=f"gw-{i}", listen=f"127.0.0.1:{next(ports)}")
            for i in range(1, gateways + 1)
        ),
        durability="none" if durability == "none" else "fsync",
        keys_file=str(root / "keys.json"),
        timing=timing or TimingConfig(),
        secret_file=str(secret_file) if secret else None,
    )
    if tls:
        create_certificates(cluster, root / "tls")
        cluster = with_certificates(cluster, root / "tls")
    return cluster


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


def raft_addresses(market: MarketConfig) -> dict[str, tuple[str, int]]:
    return {r.name: parse_address(r.raft) for r in market.replicas}
