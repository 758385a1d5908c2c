"""Entry point of the ``clob`` console script."""

from __future__ import annotations

import importlib
import sys

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
    "cli.certs",
    "cli.bench_shard",
    "cli.bench_consensus",
)


# Top-level commands whose module alone is enough: `clob replay` then starts
# without importing trio, the gateway and the rest (it is run once per file).
STANDALONE: dict[str, str] = {
    "replay": "cli.replay",
    "sim": "cli.sim",
    "node": "cli.node",
    "gateway": "cli.gateway",
}


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else None
    standalone = STANDALONE.get(command) if command is not None else None
    for name in (standalone,) if standalone is not None else COMMAND_MODULES:
        importlib.import_module(name)
    app()
