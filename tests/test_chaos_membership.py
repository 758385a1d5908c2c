"""Membership changes in chaos runs: planning spares, reading the group's committed
membership, choosing whom to remove, and matching processes to members."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trio

from chaos.checker import CommittedEntry, CommittedLog
from chaos.collect import replay_sources, spans_text
from chaos.committed import EngineBase
from chaos.faults import plan_faults
from chaos.history import FaultRecord, History
from chaos.membership import (
    REPLACE_KIND,
    GroupView,
    change_toward,
    newest_leader,
    parse_view,
    pick_removal,
    reconcile,
    spares_needed,
    stable_view,
)
from chaos.proxy import Link, ProxyMesh
from chaos.recorder import contiguous_runs
from chaos.report import faults_table
from chaos.run import offline_sources
from chaos.supervisor import proxy_ports
from chaos.topology import build_cluster, raft_addresses, with_peer_addresses
from config.load import load_config
from config.render import write_config
from tests.test_chaos_supervisor import stand_in_cluster

MARKETS = ["BTC-USD", "ETH-USD"]
POOL = ["btc-usd-1", "btc-usd-2", "btc-usd-3", "btc-usd-4", "btc-usd-5"]


def _view(
    voters: tuple[str, ...] = ("btc-usd-1", "btc-usd-2", "btc-usd-3"),
    learners: tuple[str, ...] = (),
    *,
    leader: str = "btc-usd-1",
    term: int = 3,
    commit: int = 100,
    last: int = 100,
) -> GroupView:
    return GroupView(leader, term, commit, last, voters, learners)


def test_each_planned_replacement_gets_its_own_spare() -> None:
    plan = plan_faults(4, 300, MARKETS, election_timeout_s=0.6, kinds=[REPLACE_KIND, "delay"])
    replacements = [f for f in plan if f.kind == REPLACE_KIND]
    assert replacements, plan
    needed = spares_needed(plan)
    assert sum(needed.values()) == len(replacements)
    for market, count in needed.items():
        assert count == sum(f.market == market for f in replacements)
    # a replacement is given the time a catch-up takes before the next fault
    assert all(5.0 <= f.duration <= 8.0 for f in replacements)
    for before, after in itertools.pairwise(plan):
        assert before.at + before.duration < after.at
    assert spares_needed(plan_faults(4, 300, MARKETS, election_timeout_s=0.6)) != {}
    assert (
        spares_needed(plan_faults(4, 300, MARKETS, election_timeout_s=0.6, kinds=["delay"])) == {}
    )


def test_spares_are_configured_with_proxied_links_both_ways(tmp_path: Path) -> None:
    cluster = build_cluster(tmp_path, spares={"BTC-USD": 2})
    btc, eth = cluster.markets
    assert [r.name for r in btc.replicas] == POOL
    assert [r.join for r in btc.replicas] == [False, False, False, True, True]
    assert btc.initial_voters() == ("btc-usd-1", "btc-usd-2", "btc-usd-3")
    assert len(eth.replicas) == 3
    addresses = [a for m in cluster.markets for r in m.replicas for a in (r.raft, r.client)]
    addresses += [g.listen for g in cluster.gateways]
    assert len(set(addresses)) == len(addresses) == 18
    assert load_config(write_config(cluster, tmp_path / "cluster.toml")) == cluster
    mesh = ProxyMesh(raft_addresses(btc))
    for a, b in itertools.permutations(POOL, 2):
        assert Link(a, b) in mesh.proxies  # partition, isolate and delay reach a spare
    own = with_peer_addresses(cluster, "btc-usd-4", lambda a, b: f"proxy:{a}->{b}")
    raft = {r.name: r.raft for r in own.markets[0].replicas}
    assert raft["btc-usd-4"] == btc.replicas[3].raft
    assert raft["btc-usd-1"] == "proxy:btc-usd-4->btc-usd-1"
    # every proxy gets a port of its own that no replica or gateway is configured with
    meshes = [mesh, ProxyMesh(raft_addresses(eth))]
    ports = proxy_ports(cluster, meshes)
    assert [set(p) for p in ports] == [set(m.proxies) for m in meshes]
    chosen = [port for p in ports for port in p.values()]
    assert len(set(chosen)) == len(chosen) == 20 + 6
    assert not set(chosen) & {int(a.rsplit(":", 1)[1]) for a in addresses}


def test_a_leaders_status_reply_gives_the_group_view() -> None:
    reply = {
        "t": "status", "name": "btc-usd-2", "role": "leader", "term": 4, "commit_index": 9,
        "last_index": 11, "voters": ["btc-usd-1", "btc-usd-2"], "learners": ["btc-usd-4"],
    }  # fmt: skip
    view = parse_view(reply)
    assert view == GroupView("btc-usd-2", 4, 9, 11, ("btc-usd-1", "btc-usd-2"), ("btc-usd-4",))
    assert view.members == ("btc-usd-1", "btc-usd-2", "btc-usd-4")
    assert parse_view({**reply, "role": "follower"}) is None
    assert parse_view({"t": "error", "code": "unavailable"}) is None
    old = _view(leader="btc-usd-1", term=3)
    assert newest_leader([old, None, view]) == view  # a deposed leader may still think it leads
    assert newest_leader([None, None]) is None


def test_a_membership_is_committed_once_its_leader_committed_what_it_held() -> None:
    first = _view(commit=90, last=100)
    assert stable_view(first, _view(commit=100, last=120))
    assert not stable_view(first, _view(commit=99, last=120)), "the change may be uncommitted"
    assert not stable_view(first, _view(commit=100, last=120, term=4)), "a new term"
    assert not stable_view(first, _view(commit=100, leader="btc-usd-2"))
    changed = _view(("btc-usd-1", "btc-usd-2", "btc-usd-3"), ("btc-usd-4",), commit=100)
    assert not stable_view(first, changed), "the membership moved in between"
    assert not stable_view(None, first) and not stable_view(first, None)


def test_the_spare_becomes_a_voter_step_by_step_and_a_member_leaves() -> None:
    plain = _view()
    learner = _view(learners=("btc-usd-4",))
    voter = _view(("btc-usd-1", "btc-usd-2", "btc-usd-3", "btc-usd-4"))
    assert change_toward(plain, "btc-usd-4", "voter") == "add_replica"
    assert change_toward(learner, "btc-usd-4", "voter") == "promote_replica"
    assert change_toward(voter, "btc-usd-4", "voter") is None
    assert change_toward(voter, "btc-usd-2", "absent") == "remove_replica"
    assert change_toward(learner, "btc-usd-4", "absent") == "remove_replica"
    assert change_toward(plain, "btc-usd-4", "absent") is None


def test_only_an_old_follower_is_removed_and_never_below_three_voters() -> None:
    four = ("btc-usd-1", "btc-usd-2", "btc-usd-3", "btc-usd-4")
    picks = {pick_removal(four, "btc-usd-2", ["btc-usd-4"], c) for c in range(10)}
    assert picks == {"btc-usd-1", "btc-usd-3"}  # neither the leader nor the newcomer
    assert pick_removal(four, None, ["btc-usd-4"], 0) == "btc-usd-1"
    three = ("btc-usd-1", "btc-usd-2", "btc-usd-4")
    assert pick_removal(three, "btc-usd-1", ["btc-usd-4"], 0) is None  # promotion failed
    assert pick_removal(("a", "b", "c", "d"), "a", ["b", "c", "d"], 1) is None


def test_reconcile_starts_members_and_retires_whoever_left() -> None:
    view = _view(("btc-usd-2", "btc-usd-3", "btc-usd-4"), ("btc-usd-5",))
    plan = reconcile(view, POOL, running=["btc-usd-1", "btc-usd-2", "btc-usd-3"], retired=[])
    assert plan.members == ("btc-usd-2", "btc-usd-3", "btc-usd-4", "btc-usd-5")
    assert plan.start == ("btc-usd-4", "btc-usd-5")
    assert plan.stop == ("btc-usd-1",)
    assert plan.unknown == ()
    # a spare that never joined is stopped; a retired member coming back is reported
    plan = reconcile(_view(), POOL, running=[*POOL[:3], "btc-usd-4"], retired=["btc-usd-3"])
    assert plan.stop == ("btc-usd-4",)
    assert plan.unknown == ("btc-usd-3",)
    assert "btc-usd-3" not in plan.start


def test_report_shows_the_membership_timing() -> None:
    history = History()
    history.fault(FaultRecord("kill_leader", "btc-usd-1", "BTC-USD", 0, 10**9, "", 3 * 10**8))
    for joined, removed in ((700, 150), (400, 90), (900, None)):
        record = FaultRecord(
            REPLACE_KIND, "btc-usd-4 <- btc-usd-1", "BTC-USD", 0, 5 * 10**9, "members x",
            joined_ns=joined * 10**6, removed_ns=None if removed is None else removed * 10**6,
        )  # fmt: skip
        history.fault(record)
    text = "\n".join(faults_table(history, 0))
    assert "voter in 700 ms, removed in 150 ms; members x" in text
    assert "voter in 900 ms, removed in -" in text
    assert "membership: 3 replicas added as voter (median 700 ms, max 900 ms)" in text
    assert "2 removed (median 150 ms, max 150 ms)" in text
    assert "leader failover: 1 measured" in text


# A stand-in for a replica: listens on the replica's client port until killed.
def test_spares_are_taken_once_and_only_members_are_active(tmp_path: Path) -> None:
    cluster = stand_in_cluster(tmp_path, spares=2)
    assert cluster.replicas("BTC-USD") == POOL[:3]
    assert cluster.pool("BTC-USD") == POOL
    assert cluster.active() == POOL[:3]
    assert cluster.take_spare("BTC-USD") == "btc-usd-4"
    assert cluster.replicas("BTC-USD") == POOL[:4]
    assert cluster.take_spare("BTC-USD") == "btc-usd-5"
    assert cluster.take_spare("BTC-USD") is None


@pytest.mark.processes
async def test_applying_a_membership_starts_the_spare_and_retires_the_removed(
    tmp_path: Path,
) -> None:
    cluster = stand_in_cluster(tmp_path, spares=2)
    try:
        with trio.fail_after(30):
            await cluster.start_all()
        assert [n for n, p in cluster.processes.items() if p.running] == POOL[:3]
        view = _view(("btc-usd-2", "btc-usd-3", "btc-usd-4"))
        running = [n for n, p in cluster.processes.items() if p.running]
        with trio.fail_after(30):
            await cluster.apply("BTC-USD", reconcile(view, POOL, running, cluster.retired))
        assert cluster.replicas("BTC-USD") == ["btc-usd-2", "btc-usd-3", "btc-usd-4"]
        assert cluster.retired == {"btc-usd-1"}
        assert not cluster.processes["btc-usd-1"].running
        assert cluster.processes["btc-usd-4"].running
        assert cluster.exit_codes() == {}, "a retired replica was stopped by us"
        assert cluster.active() == ["btc-usd-2", "btc-usd-3", "btc-usd-4"]
        assert cluster.take_spare("BTC-USD") == "btc-usd-5"  # never the retired name
        # offline checks: the members' data directories and the removed one that ran
        (tmp_path / "data" / "btc-usd-1").mkdir(parents=True)
        assert offline_sources(cluster, "BTC-USD") == [
            ("btc-usd-2", "btc-usd-2(disk)"),
            ("btc-usd-3", "btc-usd-3(disk)"),
            ("btc-usd-4", "btc-usd-4(disk)"),
            ("btc-usd-5", "btc-usd-5(disk)"),
            ("btc-usd-1", "btc-usd-1(disk, removed)"),
        ]
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop_all()


def test_each_data_directory_is_replayed_over_its_own_stretch() -> None:
    """A removed replica's directory ends where it left, a spare's starts at the snapshot
    it installed: each is replayable on its own, and together they cover more."""

    def entry(seq: int, with_command: bool = False) -> CommittedEntry:
        command = {"type": "cancel", "order_id": seq} if with_command else None
        return CommittedEntry(seq, ({"type": "cancelled", "seq": seq},), command)

    live = {"btc-usd-2": [entry(s) for s in range(1, 101)]}
    removed = CommittedLog.from_entries("M", [entry(s, True) for s in range(1, 41)])
    spare = CommittedLog.from_entries(
        "M", [entry(s, True) for s in range(71, 96)], EngineBase(70, b"state at 70")
    )
    no_base = CommittedLog.from_entries("M", [entry(s, True) for s in range(50, 60)])
    logs = replay_sources("M", live, [removed, spare, no_base, CommittedLog("M", {}, 1, 0)])
    assert [log.replay_range() for log in logs] == [(1, 40), (71, 95)]
    assert all((log.first_seq, log.last_seq) == (1, 100) for log in logs)
    assert spans_text([(71, 95), (1, 40), (30, 45), (46, 50)]) == ("1..50, 71..95", 75)
    assert spans_text([]) == ("", 0)


def test_recorded_events_split_into_runs_of_consecutive_seqs() -> None:
    events = {s: CommittedEntry(s, ({"type": "cancelled", "seq": s},)) for s in [5, 1, 2, 3, 7, 8]}
    runs = contiguous_runs(events)
    assert [[e.seq for e in run] for run in runs] == [[1, 2, 3], [5], [7, 8]]
    assert contiguous_runs({}) == []
