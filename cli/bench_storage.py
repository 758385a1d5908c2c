"""``clob bench storage``: appends/s and syncs/s of the WAL with group commit.

Appends ``--entries`` entries of ``--entry-bytes`` bytes, ``--per-append``
per :meth:`Storage.append` call, with a hard state and one
:meth:`Storage.sync` every ``--per-sync`` entries, into a fresh temporary
directory (or ``--dir``).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from cli.apps import bench_app
from shard.records import Entry, EntryKind, HardState
from shard.storage import Durability, open_storage


def run_storage_bench(
    directory: Path,
    durability: Durability,
    entries: int,
    per_append: int,
    per_sync: int,
    entry_bytes: int,
    progress: bool,
) -> dict[str, Any]:
    """Run the benchmark in ``directory``; return the figures as a JSON-ready dict."""
    storage, _ = open_storage(directory, durability)
    data = b"x" * entry_bytes
    batch_starts = range(1, entries + 1, per_append)
    next_sync = per_sync
    next_report = time.perf_counter() + 1.0
    started = time.perf_counter()
    try:
        for first in batch_starts:
            last = min(first + per_append, entries + 1)
            storage.append([Entry(1, i, EntryKind.NORMAL, data) for i in range(first, last)])
            if last - 1 >= next_sync or last > entries:
                storage.set_hard_state(HardState(1, "bench", last - 1))
                storage.sync()
                next_sync += per_sync
                if progress and time.perf_counter() >= next_report:
                    next_report += 1.0
                    typer.echo(f"  {last - 1:,} / {entries:,} entries", err=True)
        elapsed = time.perf_counter() - started
        stats = storage.statistics().wal
    finally:
        storage.close()
    return {
        "durability": str(durability),
        "entries": entries,
        "entry_bytes": entry_bytes,
        "per_append": per_append,
        "per_sync": per_sync,
        "seconds": elapsed,
        "appends_per_second": entries / elapsed,
        "syncs_per_second": stats.syncs / elapsed,
        "fsyncs": stats.fsyncs,
        "mb_per_second": stats.appended_bytes / elapsed / 1e6,
        "mean_sync_ms": stats.total_sync_seconds / max(stats.syncs, 1) * 1e3,
        "cores": os.cpu_count(),
    }


@bench_app.command("storage")
def bench_storage(
    durability: Annotated[Durability, typer.Option(help="fsync or none (unsafe).")] = (
        Durability.FSYNC
    ),
    entries: Annotated[int, typer.Option(min=1, help="Entries to append.")] = 200_000,
    per_append: Annotated[int, typer.Option(min=1, help="Entries per append() call.")] = 1,
    per_sync: Annotated[int, typer.Option(min=1, help="Entries per sync().")] = 1000,
    entry_bytes: Annotated[int, typer.Option(min=0, help="Payload bytes per entry.")] = 64,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Data directory (default: a temp dir).")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure WAL appends/s and syncs/s with group commit."""
    with tempfile.TemporaryDirectory(prefix="clob-bench-storage-") as temp:
        target = directory if directory is not None else Path(temp)
        result = run_storage_bench(
            target, durability, entries, per_append, per_sync, entry_bytes, progress=not json
        )
    if json:
        typer.echo(orjson.dumps(result).decode())
        return
    typer.echo(
        f"storage {result['durability']}: {result['appends_per_second']:,.0f} appends/s, "
        f"{result['syncs_per_second']:,.0f} syncs/s ({result['per_sync']} entries/sync, "
        f"{result['entry_bytes']} B each, mean sync {result['mean_sync_ms']:.2f} ms, "
        f"{result['mb_per_second']:.1f} MB/s, {result['cores']} cores)"
    )
