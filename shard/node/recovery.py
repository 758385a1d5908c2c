"""Rebuilding a replica's consensus core from what storage recovered, and the command
that creates the market in a brand-new group."""

from __future__ import annotations

import random

import orjson

from config.schema import ClusterConfig, MarketConfig, ReplicaConfig
from shard.raft import Raft, RaftConfig
from shard.raft.ready import Snapshot as RaftSnapshot
from shard.records import Membership
from shard.storage import Recovered


def build_raft(
    cluster: ClusterConfig, market: MarketConfig, me: ReplicaConfig, recovered: Recovered
) -> Raft:
    """The Raft core of replica ``me`` from its recovered snapshot, hard state and log.

    An initial member bootstraps with the configured voters (used only when
    there is no snapshot); a spare (``join = true``) starts with no
    membership and learns it from the leader once it is added.
    """
    timing = cluster.timing
    config = RaftConfig(
        node_id=me.name,
        election_tick=timing.election_ticks,
        heartbeat_tick=timing.heartbeat_ticks,
    )
    snapshot = recovered.snapshot
    return Raft(
        config,
        random.Random(),  # election jitter; the core itself never draws randomness
        membership=None if me.join else Membership(market.initial_voters()),
        hard_state=recovered.hard_state,
        snapshot=RaftSnapshot(snapshot.meta, snapshot.data) if snapshot else None,
        entries=recovered.entries,
    )


def create_market_command(market: MarketConfig) -> bytes:
    """The engine command a leader proposes when its engine lacks the market."""
    command = {
        "type": "create_market",
        "market": market.name,
        "tick_size": market.tick_size,
        "lot_size": market.lot_size,
    }
    return orjson.dumps(command)
