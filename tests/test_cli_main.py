"""The `clob` entry point: every command module imports and registers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cli.main import COMMAND_MODULES, STANDALONE

ROOT = Path(__file__).resolve().parent.parent


def _clob(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from cli.main import main; sys.argv[0] = 'clob'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_lists_every_top_level_command() -> None:
    done = _clob("--help")
    assert done.returncode == 0, done.stderr
    for name in ("replay", "sim", "node", "gateway", "up", "chaos", "order", "watch", "bench"):
        assert name in done.stdout


def test_standalone_commands_are_registered_by_their_own_module() -> None:
    assert set(STANDALONE.values()) <= set(COMMAND_MODULES)
    for command in STANDALONE:
        done = _clob(command, "--help")
        assert done.returncode == 0, (command, done.stderr)


def test_bench_and_admin_groups_list_their_commands() -> None:
    bench = _clob("bench", "--help")
    assert all(n in bench.stdout for n in ("engine", "consensus", "shard", "gateway"))
    admin = _clob("admin", "--help")
    assert all(n in admin.stdout for n in ("status", "add-replica", "transfer-leader", "keys"))
