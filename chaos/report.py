"""The human-readable summary of a chaos run (pure: history and check results in, text out)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from chaos.checker import CommittedLog, Violation
from chaos.history import FaultRecord, History, Operation

_OUTCOMES = ("ok", "fail", "indeterminate")
_MAX_VIOLATIONS_SHOWN = 20


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.0f} ms"


def first_ack_after(fault: FaultRecord, operations: Sequence[Operation]) -> int | None:
    """ns from the fault's start to the first acknowledgement of a command sent after it."""
    times = [
        op.complete_ns - fault.start_ns
        for op in operations
        if op.outcome == "ok"
        and op.is_command
        and op.invoke_ns >= fault.start_ns
        and (fault.market is None or op.market == fault.market)
    ]
    return min(times, default=None)


def operations_table(operations: Sequence[Operation]) -> list[str]:
    counts: Counter[tuple[str, str]] = Counter((op.op, op.outcome) for op in operations)
    kinds = sorted({op.op for op in operations})
    lines = [f"{'operation':<12}" + "".join(f"{o:>15}" for o in _OUTCOMES)]
    for kind in kinds:
        lines.append(f"{kind:<12}" + "".join(f"{counts[(kind, o)]:>15}" for o in _OUTCOMES))
    totals: Counter[str] = Counter(op.outcome for op in operations)
    lines.append(f"{'total':<12}" + "".join(f"{totals[o]:>15}" for o in _OUTCOMES))
    errors = Counter(op.error for op in operations if op.error)
    if errors:
        lines.append("errors: " + ", ".join(f"{code} {n}" for code, n in errors.most_common()))
    return lines


def faults_table(history: History, run_start_ns: int) -> list[str]:
    lines = [
        f"{'t':>6}  {'fault':<15} {'target':<36} {'lasted':>8} {'failover':>9} "
        f"{'1st ack':>9}  detail"
    ]
    for fault in history.faults:
        lasted = _ms(fault.end_ns - fault.start_ns)
        detail = fault.detail + (f" ERROR: {fault.error}" if fault.error else "")
        if fault.joined_ns is not None or fault.removed_ns is not None:
            timing = f"voter in {_ms(fault.joined_ns)}, removed in {_ms(fault.removed_ns)}"
            detail = f"{timing}; {detail}" if detail else timing
        lines.append(
            f"{(fault.start_ns - run_start_ns) / 1e9:>5.1f}s  {fault.kind:<15} "
            f"{fault.target[:36]:<36} {lasted:>8} {_ms(fault.failover_ns):>9} "
            f"{_ms(first_ack_after(fault, history.operations)):>9}  {detail}"
        )
    failovers = sorted(f.failover_ns for f in history.faults if f.failover_ns is not None)
    if failovers:
        median = failovers[len(failovers) // 2]
        lines.append(
            f"leader failover: {len(failovers)} measured, median {_ms(median)}, "
            f"max {_ms(failovers[-1])}"
        )
    lines += _membership_summary(history.faults)
    return lines


def _membership_summary(faults: Sequence[FaultRecord]) -> list[str]:
    """Median and max time of the replacements' two membership changes."""
    joins = sorted(f.joined_ns for f in faults if f.joined_ns is not None)
    removals = sorted(f.removed_ns for f in faults if f.removed_ns is not None)
    if not joins and not removals:
        return []

    def summary(values: list[int]) -> str:
        if not values:
            return "none"
        return f"median {_ms(values[len(values) // 2])}, max {_ms(values[-1])}"

    return [
        f"membership: {len(joins)} replicas added as voter ({summary(joins)}), "
        f"{len(removals)} removed ({summary(removals)})"
    ]


def format_report(
    history: History,
    run_start_ns: int,
    logs: Mapping[str, CommittedLog],
    violations: Sequence[Violation],
    notes: Sequence[str] = (),
) -> str:
    lines = ["== operations by outcome ==", *operations_table(history.operations), ""]
    lines += ["== faults injected ==", *faults_table(history, run_start_ns), ""]
    messages = sum(len(s.messages) for s in history.subscriptions)
    lines.append(f"stream sessions checked: {len(history.subscriptions)} ({messages} messages)")
    for market, log in sorted(logs.items()):
        span = log.replay_range()
        if log.has_commands():
            replay = "with commands"
        elif span is not None:
            replay = f"commands of seqs {span[0]}..{span[1]}"
        else:
            replay = "events only"
        lines.append(f"committed {market}: seqs {log.first_seq}..{log.last_seq} ({replay})")
    lines += [f"note: {n}" for n in notes]
    lines.append("")
    if not violations:
        lines.append("violations: none")
    else:
        by_kind = Counter(v.kind for v in violations)
        lines.append(
            f"violations: {len(violations)} ("
            + ", ".join(f"{k} {n}" for k, n in by_kind.most_common())
            + ")"
        )
        for v in violations[:_MAX_VIOLATIONS_SHOWN]:
            ops = f" ops {list(v.op_ids)}" if v.op_ids else ""
            lines.append(f"  [{v.kind}] {v.market or '-'}: {v.message[:400]}{ops}")
        if len(violations) > _MAX_VIOLATIONS_SHOWN:
            lines.append(f"  ... and {len(violations) - _MAX_VIOLATIONS_SHOWN} more")
    return "\n".join(lines)
