"""The cluster topology as attrs classes (loaded from TOML by config.load).

Addresses are ``"host:port"`` strings. Every market has its own replica
group; ``join = true`` marks a spare replica that is not an initial member
and enters the group through ``clob admin add-replica`` (as a learner first).
TLS (optional, shard/node/tls.py): ``[tls]`` turns on mutual TLS for every
replica link, each replica then naming its own ``cert_file``/``key_file``; a
gateway with ``cert_file``/``key_file`` serves wss:// to its clients.
"""

from __future__ import annotations

from typing import Literal

import attrs

Durability = Literal["fsync", "none"]


@attrs.frozen
class ReplicaConfig:
    name: str
    raft: str  # peer (Raft) listen address
    client: str  # shard client protocol listen address
    data_dir: str
    metrics: str | None = None  # Prometheus endpoint, None to disable
    join: bool = False
    # This replica's TLS certificate and key (PEM), required when [tls] is set: presented
    # by its peer and client listeners and when it dials its peers.
    cert_file: str | None = None
    key_file: str | None = None


@attrs.frozen
class MarketConfig:
    name: str
    tick_size: str
    lot_size: str
    replicas: tuple[ReplicaConfig, ...]
    # A new_order from a user already holding this many live orders here is rejected
    # (too_many_orders; shard/limits.py). 0: no cap. Every replica must read the same.
    max_live_orders_per_user: int = 10_000

    def initial_voters(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.replicas if not r.join)


@attrs.frozen
class GatewayConfig:
    name: str
    listen: str  # WebSocket listen address
    metrics: str | None = None
    # Both or neither: the certificate and key (PEM) the client listener presents,
    # serving wss:// instead of ws://. Independent of [tls].
    cert_file: str | None = None
    key_file: str | None = None


@attrs.frozen
class TimingConfig:
    """Raft timing; the election timeout is randomized in [election, 2*election) ticks.

    20 ms ticks: every tick wakes every replica, and at 10 ms an idle replica
    spent about 10% of a core on ticks and heartbeats (6% at 20 ms, measured
    with ``clob bench shard --idle``); timeouts stay 0.3-0.6 s.
    """

    tick_ms: int = 20
    election_ticks: int = 15
    heartbeat_ticks: int = 2


@attrs.frozen
class TlsConfig:
    """``[tls]``: mutual TLS on every replica link (Raft peer and client ports).

    Every replica listener presents its own certificate (``cert_file`` in its
    ``[[markets.replicas]]`` entry) and requires the connecting side to present
    one signed by ``ca_file``; every connecting side verifies the replica's
    certificate against ``ca_file`` and the host it dialed. Gateways, ``clob
    admin`` and the other clients present the shared client certificate.
    """

    ca_file: str  # the cluster CA certificate (PEM) that signs every replica link's certificate
    client_cert_file: str  # the certificate gateways and clob admin present to replicas
    client_key_file: str


@attrs.frozen
class ClusterConfig:
    cluster_id: str
    markets: tuple[MarketConfig, ...]
    gateways: tuple[GatewayConfig, ...] = ()
    durability: Durability = "fsync"
    keys_file: str = "var/keys.json"
    timing: TimingConfig = TimingConfig()
    # A file holding the cluster secret that every connection to a replica must prove
    # (shard/node/authentication.py); None: replicas accept any connection.
    secret_file: str | None = None
    tls: TlsConfig | None = None  # None: replica links are plain TCP

    def market(self, name: str) -> MarketConfig | None:
        return next((m for m in self.markets if m.name == name), None)

    def replica(self, name: str) -> tuple[MarketConfig, ReplicaConfig] | None:
        for market in self.markets:
            for replica in market.replicas:
                if replica.name == name:
                    return market, replica
        return None
