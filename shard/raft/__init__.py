"""Raft consensus as a pure, sans-I/O state machine (in the style of etcd-io/raft).

How to drive it (the owner is the node runtime or the simulator)::

    from shard.raft import Raft, RaftConfig

    raft = Raft(RaftConfig(node_id="n1", election_tick=10, heartbeat_tick=1),
                random.Random(seed),                       # injected randomness
                membership=Membership(("n1", "n2", "n3")),  # only for a brand-new group
                hard_state=hs, snapshot=snap, entries=log_entries)   # from storage

    # inputs (all synchronous, none blocks, none does I/O):
    raft.tick()                       # every tick of the owner's clock (e.g. 10 ms)
    raft.ticks_to_deadline()          # ticks until one can matter (None: never); an owner
                                      #   may sleep that long, then tick() once per tick
                                      #   elapsed (before stepping what arrived later)
    raft.step(message)                # every message from a peer (shard.raft.messages)
    raft.propose(data)                # leader only -> (index, term); raises NotLeader(leader)
                                      #   or ProposalDropped
    raft.read_index(context)          # linearizable read; answer comes in Ready.read_states
    raft.transfer_leader(target)      # leader only
    raft.propose_membership(MembershipChange(ChangeKind.ADD_LEARNER, "n4"))
    raft.compact(applied_index, snapshot_bytes)   # after the owner saved a snapshot

    # outputs: loop while raft.has_ready()
    rd = raft.ready()
    storage.save(rd.snapshot, rd.entries, rd.hard_state); storage.sync()   # 1. durable
    transport.send(rd.messages)                                             # 2. then send
    if rd.snapshot: state_machine.restore(rd.snapshot.data)                 # 3. then apply
    for e in rd.committed_entries: state_machine.apply(e)
    for rs in rd.read_states: serve rs.context once applied index >= rs.index
    raft.advance(rd)                                                        # 4. done

Shortcut: if ``rd.send_before_persist`` is True (set only for a leader whose
term and vote are already durable) step 2 may happen before or during step 1.
Do not decide this from ``raft.role`` alone: in the Ready that made a node
leader its new term and vote are not durable yet.

Only one Ready is outstanding at a time: ``has_ready()`` is False until
``advance`` is called, but the core keeps accepting ``step``/``tick``/
``propose`` meanwhile (so the owner may persist one Ready while the next one
accumulates). ``rd.entries`` replace any stored entries at or after
``rd.entries[0].index`` (a follower may truncate a conflicting suffix).
``rd.committed_entries`` are always covered by entries already persisted or
persisted in the same Ready. A committed entry is identified by
``(index, term)``: a proposal returned ``(i, t)`` committed iff the entry at
``i`` comes back with term ``t``.

Observing it: ``raft.role``, ``raft.term``, ``raft.lead`` (known leader or
None), ``raft.membership`` and ``raft.status()`` (a frozen
:class:`~shard.raft.ready.Status` with per-follower progress and lag on the
leader) may be read at any time; nothing else of its state is public.

Node ids are strings; messages carry ``src``/``dst``; encode them for the
wire with :mod:`shard.raft.codec` (``encode(msg) -> bytes``,
``decode(bytes) -> msg``, raising ``DecodeError`` on garbage).
"""

from __future__ import annotations

from shard.raft.config import RaftConfig, RandomSource
from shard.raft.core import Raft
from shard.raft.errors import NotLeader, ProposalDropped, RaftError
from shard.raft.membership import ChangeKind, InvalidChange, MembershipChange
from shard.raft.messages import Message
from shard.raft.ready import PeerStatus, ReadState, Ready, Role, Snapshot, SoftState, Status

__all__ = [
    "ChangeKind",
    "InvalidChange",
    "MembershipChange",
    "Message",
    "NotLeader",
    "PeerStatus",
    "ProposalDropped",
    "Raft",
    "RaftConfig",
    "RaftError",
    "RandomSource",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SoftState",
    "Status",
]
