"""Entry point of the ``clob`` console script."""

from __future__ import annotations

import importlib

from cli.apps import app

# Each module registers its commands on the apps of cli.apps when imported.
COMMAND_MODULES: tuple[str, ...] = (
    "cli.replay",
    "cli.bench_engine",
    "cli.bench_storage",
    "cli.chaos",
    "cli.sim",
    "cli.gateway",
    "cli.keys",
    "cli.client",
    "cli.up",
    "cli.bench_gateway",
    "cli.node",
    "cli.admin",
    "cli.bench_shard",
    "cli.bench_consensus",
)


def main() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    app()
