"""The typer applications that command modules attach their commands to.

Each ``cli/*.py`` command module imports the app it extends from here and is
listed in :data:`cli.main.COMMAND_MODULES`, so modules stay independent.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="clob",
    help="A replicated, multi-market central limit order book.",
    no_args_is_help=True,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: engine, consensus, shard, gateway.", no_args_is_help=True)
admin_app = typer.Typer(help="Administer replica groups and API keys.", no_args_is_help=True)
keys_app = typer.Typer(help="Create and revoke API keys.", no_args_is_help=True)

app.add_typer(bench_app, name="bench")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(keys_app, name="keys")
