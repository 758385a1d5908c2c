"""The names of the faults a chaos run can inject (kept apart so the CLI can
list them without importing the harness)."""

from __future__ import annotations

FAULT_KINDS: tuple[str, ...] = (
    "kill_leader",
    "kill_follower",
    "pause_leader",
    "pause_follower",
    "isolate_leader",
    "partition",
    "asymmetric",
    "delay",
    "torn_wal",
    "kill_gateway",
    "transfer_leader",
    "replace_follower",
)
