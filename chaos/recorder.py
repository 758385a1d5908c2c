"""Records each market's applied events while the run goes on, following the group.

A replica keeps its applied events in memory: one restarted from a snapshot
streams them only from there, and a removed replica takes them away when it
is stopped. With kills and replacements under snapshots, the seqs that no
replica can stream at the end grow, and the checks of what clients were
told (which need each seq's events) would skip them. So a subscriber per
market streams every applied seq during the run, from whichever current
member serves it (:class:`shard.node.subscription.Subscription` fails over
between replicas), and resubscribes every few seconds with the current
members, rotated, so that a spare that joined is used and a stalled replica
(paused, cut off) is left. Each seq is recorded once, as a replica applied it.
"""

from __future__ import annotations

import attrs
import trio

from chaos.collect import oldest_kept
from chaos.committed import CommittedEntry
from chaos.supervisor import ChaosCluster
from shard.node.api import ShardError, SubscriptionGone
from shard.node.client import client_opener
from shard.node.subscription import Subscription
from shard.observability import get_logger

log = get_logger("chaos.recorder")

_REFRESH_S = 5.0  # resubscribe with the current members this often
_RETRY_S = 0.2


@attrs.define
class MarketRecord:
    events: dict[int, CommittedEntry] = attrs.field(factory=dict)
    skipped: list[tuple[int, int]] = attrs.field(factory=list)  # seqs no replica kept


async def record_events(cluster: ChaosCluster, market: str, record: MarketRecord) -> None:
    """Stream ``market``'s applied events into ``record`` until cancelled."""
    config = cluster.config.market(market)
    assert config is not None, market
    addresses = {r.name: r.client for r in config.replicas}
    opening = client_opener(cluster.secret)
    next_seq = 1
    turn = 0
    gone: list[int] = []  # oldest seq kept, by the members that could not serve next_seq
    while True:
        members = cluster.replicas(market)
        turn += 1
        order = members[turn % len(members) :] + members[: turn % len(members)]
        try:
            with trio.move_on_after(_REFRESH_S):
                async with Subscription(
                    [(n, addresses[n]) for n in order],
                    next_seq,
                    retry_for=2.0,
                    opening=opening,
                    tls=cluster.tls,
                ) as items:
                    async for item in items:
                        record.events[item.seq] = CommittedEntry(item.seq, tuple(item.events))
                        next_seq = item.seq + 1
                        gone.clear()
        except SubscriptionGone as exc:
            # the first replica asked no longer keeps next_seq; another may (the next turn
            # asks the next member first); only when none does are those seqs skipped
            gone.append(oldest_kept(str(exc)) or next_seq)
            if len(gone) >= len(members):
                oldest = min(gone)
                gone.clear()
                if oldest > next_seq:
                    record.skipped.append((next_seq, oldest - 1))
                    log.info("seqs gone from every member", market=market, seqs=(next_seq, oldest))
                    next_seq = oldest
                else:
                    await trio.sleep(_RETRY_S)
        except ShardError as exc:  # no member reachable now (a partition, a restart)
            log.debug("recorder resubscribes", market=market, error=repr(exc))
            gone.clear()
            await trio.sleep(_RETRY_S)


def contiguous_runs(events: dict[int, CommittedEntry]) -> list[list[CommittedEntry]]:
    """The recorded entries as runs of consecutive seqs, in order."""
    runs: list[list[CommittedEntry]] = []
    for seq in sorted(events):
        if runs and runs[-1][-1].seq == seq - 1:
            runs[-1].append(events[seq])
        else:
            runs.append([events[seq]])
    return runs
