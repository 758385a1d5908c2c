"""``clob replay [FILE]``: run JSON-line commands through a fresh engine.

Reads commands one per line (FILE, or standard input when absent or ``-``),
writes each command's events as JSON lines to standard output as it goes.
``seq`` is the 1-based index of the command among non-blank lines. A line that
is not valid JSON, or not an object, is rejected (``bad_command``) like any
other bad command; replay never stops early and exits 0 unless its input
cannot be read.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import BinaryIO

import orjson
import typer

from cli.apps import app
from clob.engine import Engine

# Not valid JSON: handed to the engine as a non-object, which it rejects.
_UNPARSABLE = object()
_FLUSH_BYTES = 1 << 16


def replay_lines(lines: Iterable[bytes], out: BinaryIO, flush_each: bool = False) -> int:
    """Replay ``lines`` into ``out``; return the number of commands applied.

    Output is written in chunks of about 64 KiB, or after every command when
    ``flush_each`` (an interactive terminal).
    """
    flush_at = 1 if flush_each else _FLUSH_BYTES
    engine = Engine()
    execute = engine.execute
    encode = engine.encode
    dumps = orjson.dumps
    pending: list[bytes] = []
    size = 0
    seq = 0
    for line in lines:
        if not line.strip():
            continue
        seq += 1
        try:
            command: object = orjson.loads(line)
        except orjson.JSONDecodeError:
            command = _UNPARSABLE
        for event in execute(command, seq):
            chunk = dumps(encode(event), option=orjson.OPT_APPEND_NEWLINE)
            pending.append(chunk)
            size += len(chunk)
        if size >= flush_at:
            out.write(b"".join(pending))
            pending.clear()
            size = 0
            if flush_each:
                out.flush()
    out.write(b"".join(pending))
    out.flush()
    return seq


@app.command()
def replay(
    file: str = typer.Argument("-", help="JSON-lines command file; '-' or absent: stdin."),
) -> None:
    """Replay JSON-line commands through a fresh engine, printing events as JSON lines."""
    out = sys.stdout.buffer
    if file == "-":
        replay_lines(sys.stdin.buffer, out, flush_each=sys.stdin.isatty())
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below, errors reported
    except OSError as exc:
        typer.echo(f"clob replay: cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    with handle:
        try:
            replay_lines(handle, out)
        except OSError as exc:
            typer.echo(f"clob replay: cannot read {file}: {exc.strerror}", err=True)
            raise typer.Exit(1) from exc
