"""One chaos run end to end: cluster up, workload + faults, heal, collect, check.

    result = trio.run(run_chaos, ChaosSettings(seed=7, seconds=90), print)
    result.violations  # empty when the system kept every promise

The run directory (configs, data, process logs, ``history.jsonl``) is kept
when a violation is found or when asked, so a failure can be investigated.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import trio

from chaos.checker import (
    CheckReport,
    CommittedEntry,
    CommittedLog,
    Violation,
    check_all,
    check_checkpoints,
    check_replay,
    check_replica_logs,
)
from chaos.collect import (
    fetch_events,
    merge_best,
    read_offline,
    replay_sources,
    settle,
    spans_text,
)
from chaos.faults import heal_everything, plan_faults, run_faults
from chaos.history import History
from chaos.kinds import FAULT_KINDS
from chaos.membership import spares_needed
from chaos.recorder import MarketRecord, contiguous_runs, record_events
from chaos.report import format_report
from chaos.supervisor import ChaosCluster, open_cluster
from chaos.topology import DEFAULT_MARKETS
from chaos.workload import WorkloadSettings, run_workload
from clob.engine import Engine
from config.schema import TimingConfig
from shard.limits import LimitedEngine
from shard.node.api import NodeStatus
from shard.observability import get_logger
from shard.storage import StorageCorrupt, StorageError

log = get_logger("chaos.run")

Progress = Callable[[str], None]


@attrs.frozen
class ChaosSettings:
    seed: int
    seconds: float
    clients: int = 6
    durability: str = "fsync"
    kinds: tuple[str, ...] = FAULT_KINDS
    root: Path | None = None  # run directory; a fresh temporary one when None
    keep: bool = False  # keep the run directory even without violations
    progress_every_s: float = 5.0
    snapshot_every: int | None = None  # replicas' applied entries between snapshots
    tls: bool = False  # mutual TLS on the replica links, wss:// gateways


@attrs.frozen
class ChaosResult:
    root: Path
    kept: bool
    violations: tuple[Violation, ...]
    notes: tuple[str, ...]
    report: str
    operations: int


def _progress_line(history: History, elapsed: float, seconds: float) -> str:
    outcomes = Counter(op.outcome for op in history.operations)
    last = history.faults[-1] if history.faults else None
    fault = f", last fault {last.kind} {last.target}" if last else ""
    return (
        f"[{elapsed:5.1f}/{seconds:.0f}s] ok {outcomes['ok']}  fail {outcomes['fail']}  "
        f"indeterminate {outcomes['indeterminate']}  faults {len(history.faults)}{fault}"
    )


async def _report_progress(
    history: History, start: float, seconds: float, every: float, progress: Progress
) -> None:
    while True:
        await trio.sleep(every)
        progress(_progress_line(history, trio.current_time() - start, seconds))


async def _collect_live(
    cluster: ChaosCluster,
    statuses: dict[str, list[NodeStatus]],
    recorded: Mapping[str, MarketRecord],
) -> tuple[dict[str, dict[str, CommittedLog]], list[str]]:
    """Each replica's applied events, per market, the events removed replicas had when
    they left, and those recorded during the run; plus problems reading them."""
    per_market: dict[str, dict[str, CommittedLog]] = {}
    problems: list[str] = []
    for market in cluster.config.markets:
        upto = max((s.applied_seq for s in statuses[market.name] if s.reachable), default=0)
        per_market[market.name] = {}
        for name in cluster.replicas(market.name):
            entries, problem = await fetch_events(
                market, name, upto, secret=cluster.secret, tls=cluster.tls
            )
            if problem:
                problems.append(problem)
            per_market[market.name][name] = CommittedLog.from_entries(market.name, entries)
        for name in cluster.pool(market.name):  # as read when they left the group
            if name in cluster.departed:
                departed = CommittedLog.from_entries(market.name, cluster.departed[name])
                per_market[market.name][f"{name}(removed)"] = departed
                problems.append(
                    f"removed replica {name}: applied seqs {departed.first_seq}.."
                    f"{departed.last_seq} read when it left"
                )
        record = recorded[market.name]
        for i, run in enumerate(contiguous_runs(record.events), 1):
            per_market[market.name][f"recorded#{i}"] = CommittedLog.from_entries(market.name, run)
        for first, last in record.skipped:
            problems.append(f"{market.name}: seqs {first}..{last} were gone before recorded")
    return per_market, problems


def offline_sources(cluster: ChaosCluster, market: str) -> list[tuple[str, str]]:
    """(replica, label) of every data directory to read offline: the members', and those
    of retired replicas that ever ran. A removed replica's committed log is a prefix of
    the group's, so it must agree seq by seq with the others as far as it goes, and its
    commands may let the replay start earlier (a spare that joined by snapshot has none
    before it)."""
    out = [(name, f"{name}(disk)") for name in cluster.replicas(market)]
    for name in cluster.pool(market):
        if name in cluster.retired and cluster.data_dir(name).is_dir():
            out.append((name, f"{name}(disk, removed)"))
    return out


def _collect_offline(
    cluster: ChaosCluster, live: dict[str, dict[str, CommittedLog]]
) -> tuple[dict[str, dict[str, CommittedLog]], list[str]]:
    offline: dict[str, dict[str, CommittedLog]] = {}
    problems: list[str] = []
    for market in cluster.config.markets:
        offline[market.name] = {}
        upto = max((log.last_seq for log in live[market.name].values()), default=0)
        for name, label in offline_sources(cluster, market.name):
            try:
                found = read_offline(
                    market.name, cluster.data_dir(name), upto, market.max_live_orders_per_user
                )
            except (StorageCorrupt, StorageError) as exc:
                problems.append(f"{name}: cannot read its data directory: {exc}")
                continue
            offline[market.name][label] = found
            if name in cluster.retired:
                problems.append(
                    f"removed replica {name}: committed seqs {found.first_seq}..{found.last_seq}"
                    " on disk, compared with the group's"
                )
    return offline, problems


async def _restart_and_compare(
    cluster: ChaosCluster, live: dict[str, dict[str, CommittedLog]], notes: list[str]
) -> list[Violation]:
    """Restart every replica from disk: the group must come back with everything it had
    applied, and replicas at the same log index must have the same state digest."""
    out: list[Violation] = []
    async with trio.open_nursery() as nursery:
        for market in cluster.config.markets:
            for name in cluster.replicas(market.name):
                nursery.start_soon(cluster.start, name)
    await cluster.wait_leaders()
    for market in cluster.config.markets:
        before = max((log.last_seq for log in live[market.name].values()), default=0)
        statuses = await cluster.status(market.name)
        with trio.move_on_after(60):
            while min(s.applied_seq for s in statuses) < before:
                await trio.sleep(0.2)
                statuses = await cluster.status(market.name)
        best = max(s.applied_seq for s in statuses)
        if best < before:
            out.append(
                Violation(
                    "lost_after_restart",
                    market.name,
                    f"after a full restart the group is at seq {best}, it had applied {before}",
                )
            )
        for status in statuses:
            if best >= before > status.applied_seq:
                notes.append(f"{status.name} still at seq {status.applied_seq} after restart")
    settled = await settle(cluster)
    for market in cluster.config.markets:
        checkpoints = {
            name: await cluster.checkpoint(name) for name in cluster.replicas(market.name)
        }
        out += check_checkpoints(market.name, checkpoints)
        if len({c[0] for c in checkpoints.values()}) > 1:
            seqs = [s.applied_seq for s in settled[market.name]]
            notes.append(f"{market.name}: checkpoints at different indexes (applied {seqs})")
    await cluster.stop_all()
    return out


async def run_chaos(settings: ChaosSettings, progress: Progress) -> ChaosResult:
    root = settings.root or Path(tempfile.mkdtemp(prefix="clob-chaos-"))
    users = [f"u{i}" for i in range(1, settings.clients + 1)]
    history = History()
    violations: list[Violation] = []
    notes: list[str] = []
    run_start_ns = time.monotonic_ns()
    progress(f"chaos run seed {settings.seed}, {settings.seconds:.0f}s, directory {root}")
    recorded = {name: MarketRecord() for name, _, _ in DEFAULT_MARKETS}
    timing = TimingConfig()
    election_s = 2 * timing.election_ticks * timing.tick_ms / 1000
    markets = [name for name, _, _ in DEFAULT_MARKETS]
    plan = plan_faults(
        settings.seed, settings.seconds, markets, election_timeout_s=election_s,
        kinds=settings.kinds,
    )  # fmt: skip
    async with open_cluster(
        root,
        users=users,
        durability=settings.durability,
        timing=timing,
        snapshot_every=settings.snapshot_every,
        spares=spares_needed(plan),  # a fresh replica for each planned replacement
        tls=settings.tls,
    ) as cluster:
        await cluster.wait_leaders()
        progress(f"cluster up; {len(plan)} faults planned")
        start = trio.current_time()
        run_start_ns = time.monotonic_ns()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                _report_progress, history, start, settings.seconds,
                settings.progress_every_s, progress,
            )  # fmt: skip
            nursery.start_soon(run_faults, cluster, plan, history, start)
            for market in markets:
                nursery.start_soon(record_events, cluster, market, recorded[market])
            await run_workload(
                seed=settings.seed,
                seconds=settings.seconds,
                urls=list(cluster.gateway_urls().values()),
                api_keys=cluster.api_keys,
                markets=cluster.config.markets,
                history=history,
                settings=WorkloadSettings(clients=settings.clients, ca_file=cluster.ca_file),
            )
            nursery.cancel_scope.cancel()
        progress(_progress_line(history, trio.current_time() - start, settings.seconds))
        progress("healing and letting the replicas settle")
        for problem in await heal_everything(cluster):
            violations.append(Violation("recovery", None, problem))
        statuses = await settle(cluster)
        live, problems = await _collect_live(cluster, statuses, recorded)
        notes += problems
        for name, codes in cluster.exit_codes().items():
            violations.append(Violation("crash", None, f"{name} exited by itself: codes {codes}"))
        await cluster.stop_all()
        progress("reading every replica's data directory")
        offline, problems = _collect_offline(cluster, live)
        notes += problems
        progress("restarting the replicas: nothing acknowledged may be lost")
        violations += await _restart_and_compare(cluster, live, notes)
    for fault in history.faults:
        if fault.error:
            violations.append(Violation("recovery", fault.market, fault.error))
    logs: dict[str, CommittedLog] = {}
    for market in live:
        violations += check_replica_logs(market, {**live[market], **offline[market]})
        events: dict[str, list[CommittedEntry]] = {
            name: list(log.entries.values()) for name, log in live[market].items()
        }
        logs[market] = merge_best(market, events, offline[market].values())
    # replay as the replicas applied: with the markets' live-order cap (shard/limits.py)
    (per_user,) = {m.max_live_orders_per_user for m in cluster.config.markets}  # chaos: equal

    def fresh() -> LimitedEngine:
        return LimitedEngine(Engine(), per_user)

    def restored(data: bytes) -> LimitedEngine:
        return LimitedEngine(Engine.restore(data), per_user)

    report: CheckReport = check_all(
        history.operations, history.subscriptions, logs, statuses, fresh, None, restored
    )
    violations += report.violations
    notes += report.notes
    for market in live:
        # the best data directory was replayed above; replay the others where they hold
        # commands it lacks (a removed replica's, a spare's from its installed snapshot)
        best = logs[market].replay_range()
        spans = [] if best is None else [best]
        events = {name: list(log.entries.values()) for name, log in live[market].items()}
        for copy in replay_sources(market, events, offline[market].values()):
            span = copy.replay_range()
            if span is None or any(a <= span[0] and span[1] <= b for a, b in spans):
                continue
            found = check_replay(history.operations, {market: copy}, fresh, None, restored)
            violations += [v for v in found if v not in violations]
            spans.append(span)
        if len(spans) > 1:
            text, count = spans_text(spans)
            notes.append(
                f"{market}: data directories replayed each from its own start: seqs {text} "
                f"({count} of {logs[market].last_seq})"
            )
    internal = sum(op.error == "internal" for op in history.operations)
    if internal:
        # Not a safety violation (treated as indeterminate) but a bug worth chasing.
        notes.append(f"the gateways answered `internal` {internal} times; see logs/gw-*.log")
    text = format_report(history, run_start_ns, logs, violations, notes)
    history.dump(root / "history.jsonl")
    (root / "report.txt").write_text(text + "\n")
    kept = settings.keep or bool(violations) or settings.root is not None
    if not kept:
        shutil.rmtree(root)
    return ChaosResult(root, kept, tuple(violations), tuple(notes), text, len(history.operations))
