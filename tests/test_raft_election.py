"""Election scenarios: randomized timeouts, PreVote, CheckQuorum, leases."""

from __future__ import annotations

from shard.raft import RaftConfig, Role
from shard.raft.messages import RequestVote
from shard.sim.lockstep import LockstepCluster


def test_a_leader_is_elected_by_timeouts_alone() -> None:
    c = LockstepCluster(["a", "b", "c"], seed=3)
    for _ in range(40):
        c.tick()
        if c.leader():
            break
    leader = c.leader()
    assert leader is not None
    term = c.nodes[leader].term
    assert [n for n, r in c.nodes.items() if r.role is Role.LEADER] == [leader]
    assert all(r.term == term and r.lead == leader for r in c.nodes.values())


def test_election_timeouts_are_randomized_from_the_injected_rng() -> None:
    c = LockstepCluster(["a", "b", "c", "d", "e"], seed=11)
    timeouts = {r.randomized_timeout for r in c.nodes.values()}
    assert len(timeouts) > 1
    assert all(10 <= t < 20 for t in timeouts)
    again = LockstepCluster(["a", "b", "c", "d", "e"], seed=11)
    assert [r.randomized_timeout for r in again.nodes.values()] == [
        r.randomized_timeout for r in c.nodes.values()
    ]


def test_partitioned_leader_is_replaced_and_steps_down_by_check_quorum() -> None:
    c = LockstepCluster(["a", "b", "c"], seed=1)
    c.elect("a")
    c.isolate("a")
    for _ in range(20):  # CheckQuorum runs every election timeout
        c.tick()
    assert c.nodes["a"].role is not Role.LEADER  # no majority heard from: stepped down
    for _ in range(60):
        if c.leader():
            break
        c.tick()
    new = c.leader()
    assert new in ("b", "c")
    assert c.nodes[new].term > 1


def test_rejoining_node_does_not_depose_a_healthy_leader() -> None:
    c = LockstepCluster(["a", "b", "c"], seed=2)
    c.elect("a")
    c.isolate("c")
    for _ in range(60):  # c keeps timing out, but PreVote keeps its term unchanged
        c.tick()
    assert c.nodes["c"].term == 1 and c.nodes["c"].role is Role.PRE_CANDIDATE
    c.heal()
    c.tick(times=3)
    assert c.leader() == "a" and c.nodes["a"].term == 1
    assert c.nodes["c"].lead == "a"


def test_without_prevote_a_rejoining_node_would_disrupt() -> None:
    # The control experiment for the test above: the feature is what makes the difference.
    c = LockstepCluster(
        ["a", "b", "c"],
        seed=2,
        make_config=lambda n: RaftConfig(node_id=n, pre_vote=False, check_quorum=False),
    )
    c.elect("a")
    c.isolate("c")
    c.tick(times=60)
    assert c.nodes["c"].term > 2
    c.heal()
    c.tick(times=3)
    assert c.nodes["a"].term > 1  # the leader was forced to step up to c's term


def test_vote_requests_are_ignored_within_the_leader_lease() -> None:
    c = LockstepCluster(["a", "b", "c"], seed=5)
    c.elect("a")
    term = c.nodes["b"].term
    c.nodes["b"].step(RequestVote("c", "b", term + 5, 100, term + 4))
    c.process()
    assert c.nodes["b"].term == term and c.leader() == "a"


def test_split_vote_resolves() -> None:
    c = LockstepCluster(["a", "b", "c", "d"], seed=9)
    c.nodes["a"].campaign()
    c.nodes["b"].campaign()
    c.process()
    for _ in range(60):
        if c.leader():
            break
        c.tick()
    assert c.leader() is not None


def test_only_up_to_date_nodes_can_win() -> None:
    c = LockstepCluster(
        ["a", "b", "c"],
        seed=4,
        make_config=lambda n: RaftConfig(node_id=n, pre_vote=False, check_quorum=False),
    )
    c.elect("a")
    c.isolate("c")
    for i in range(3):
        c.propose("a", b"w%d" % i)
    c.heal()
    c.isolate("a")
    c.nodes["c"].campaign()
    c.process()
    assert c.nodes["c"].role is not Role.LEADER  # b refuses: c misses committed entries
    c.nodes["b"].campaign()
    c.process()
    assert c.leader() == "b"
