"""Raft's safety properties, checked by the simulator after every step.

* Election safety: at most one leader per term.
* Log matching: an ``(index, term)`` pair names one entry (same kind, same
  data, same previous term) on every node; by induction equal pairs mean
  equal prefixes.
* No committed entry is lost: once index ``i`` is committed with term ``t``,
  no node that holds ``(i, t)`` ever replaces it. (A lagging node may still
  hold a stale entry at ``i`` for a while; it must never apply it.)
* Leader completeness: a new leader's log holds every entry committed so far.
* State machine safety: every replica applies the same entry at each index,
  and snapshots taken at the same index are byte-identical.
* Exactly once: a command is applied (as NEW) at one log index only, and every
  acknowledgement of a request reports the same outcome.
* Linearizable reads: a read returns state at least as new as every write
  acknowledged before the read started.
"""

from __future__ import annotations

import hashlib

import msgpack

from shard.raft import Raft
from shard.records import Entry
from shard.sessions import Verdict
from shard.statemachine import Outcome


class Violation(AssertionError):
    """A safety (or liveness) property of the protocol does not hold."""


class Checker:
    def __init__(self) -> None:
        self.leaders: dict[int, str] = {}
        self._entries: dict[tuple[int, int], tuple[int, bytes]] = {}
        self._prev_terms: dict[tuple[int, int], int] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self._seen_commit: dict[str, int] = {}
        self._logs: dict[str, tuple[int, list[int]]] = {}  # node -> (base index, terms)
        self._snapshots: dict[int, bytes] = {}
        self._times: dict[int, int] = {}  # log index -> state machine time after it
        self._applied_new: dict[tuple[str, int], int] = {}
        self.acks: dict[tuple[str, int], tuple[int, object]] = {}
        self.checks = 0

    def fail(self, text: str) -> None:
        raise Violation(text)

    def on_leader(self, node: str, raft: Raft) -> None:
        """``node`` is leader of ``raft.term``: election safety and leader completeness."""
        self.checks += 1
        other = self.leaders.setdefault(raft.term, node)
        if other != node:
            self.fail(f"election safety: {other} and {node} both lead term {raft.term}")
        log = raft.log
        for index, (term, _data) in self.committed.items():
            if index < log.snap_index:
                continue
            if log.term(index) != term:
                self.fail(
                    f"leader completeness: {node} leads term {raft.term} without committed "
                    f"entry {index} (term {term}); it has term {log.term(index)} there"
                )

    def on_log_reset(self, node: str, raft: Raft) -> None:
        """``node`` (re)loaded its log: from storage at boot, or from an installed snapshot."""
        log = raft.log
        terms = [log.entry(i).term for i in range(log.first_index(), log.last_index() + 1)]
        self._logs[node] = (log.snap_index, terms)

    def on_entries(self, node: str, prev_term: int | None, entries: tuple[Entry, ...]) -> None:
        """``node`` appended ``entries`` after an entry of ``prev_term`` (None: unknown)."""
        base, terms = self._logs.setdefault(node, (0, []))
        first = entries[0].index
        for e in entries:
            pos = e.index - base - 1
            if 0 <= pos < len(terms) and terms[pos] != e.term:
                c = self.committed.get(e.index)
                if c is not None and c[0] == terms[pos]:
                    self.fail(
                        f"committed entry lost: {node} replaces index {e.index} (committed in "
                        f"term {c[0]}) with term {e.term}"
                    )
        if first - base - 1 >= 0:
            del terms[first - base - 1 :]
            terms.extend(e.term for e in entries)
        pt = prev_term
        for e in entries:
            self.checks += 1
            key = (e.index, e.term)
            val = (int(e.kind), e.data)
            seen = self._entries.setdefault(key, val)
            if seen != val:
                self.fail(f"log matching: {node} has a different entry at index/term {key}")
            if pt is not None:
                known = self._prev_terms.setdefault(key, pt)
                if known != pt:
                    self.fail(f"log matching: {node} entry {key} follows term {pt}, not {known}")
            pt = e.term

    def on_restart(self, node: str) -> None:
        self._seen_commit.pop(node, None)

    def on_commit(self, node: str, raft: Raft) -> None:
        log = raft.log
        lo = max(self._seen_commit.get(node, 0), log.snap_index) + 1
        for i in range(lo, log.committed + 1):
            self._record_committed(node, log.entry(i), "commits")
        self._seen_commit[node] = max(self._seen_commit.get(node, 0), log.committed)

    def _record_committed(self, node: str, e: Entry, verb: str) -> None:
        self.checks += 1
        seen = self.committed.setdefault(e.index, (e.term, e.data))
        if seen != (e.term, e.data):
            self.fail(
                f"state machine safety: {node} {verb} index {e.index} term {e.term}, "
                f"but term {seen[0]} was committed there"
            )

    def on_apply(self, node: str, e: Entry) -> None:
        self._record_committed(node, e, "applies")

    def on_time(self, node: str, index: int, before: int, after: int) -> None:
        """A node's state machine time after applying ``index`` (shard.tradetimes): the same
        on every node, and never earlier than before the entry."""
        self.checks += 1
        if after < before:
            self.fail(f"stamp time: {node} went back from {before} to {after} at index {index}")
        seen = self._times.setdefault(index, after)
        if seen != after:
            self.fail(f"stamp time: {node} has {after} after index {index}, another had {seen}")

    def on_snapshot(self, node: str, index: int, data: bytes) -> None:
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if self._snapshots.setdefault(index, digest) != digest:
            self.fail(f"snapshot determinism: {node}'s snapshot at {index} differs")

    def on_outcome(self, node: str, out: Outcome) -> None:
        if out.verdict is not Verdict.NEW:
            return
        key = (out.client_id, out.request_no)
        first = self._applied_new.setdefault(key, out.index)
        if first != out.index:
            self.fail(f"exactly once: {key} applied at index {first} and again at {out.index}")

    def on_ack(self, client: str, request_no: int, seq: int, result: object) -> None:
        """Acknowledgements of one request agree, compared as a client receives them: packed.

        (A result remembered since a snapshot restore holds lists where a freshly
        applied one may hold tuples; both pack to the same MessagePack arrays.)
        """
        key = (client, request_no)
        if key not in self._applied_new:
            self.fail(f"acknowledged {key} was never applied")
        packed = msgpack.packb(result, use_bin_type=True)
        first = self.acks.setdefault(key, (seq, result))
        if first[0] != seq or msgpack.packb(first[1], use_bin_type=True) != packed:
            self.fail(f"exactly once: {key} acknowledged as {first} and as {(seq, result)}")

    def on_read(self, node: str, floor: int, value: int) -> None:
        if value < floor:
            self.fail(
                f"linearizable read: {node} served a read seeing {value} commands, but "
                f"{floor} were acknowledged before it started"
            )
