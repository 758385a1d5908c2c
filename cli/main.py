"""Entry point of the ``clob`` console script."""

from __future__ import annotations

import importlib

from cli.apps import app

# Each module registers its commands on the apps of cli.apps when imported.
COMMAND_MODULES: tuple[str, ...] = ("cli.replay",)


def main() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name)
    app()
