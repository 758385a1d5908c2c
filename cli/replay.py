"""``clob replay [FILE]``: run JSON-line commands through a fresh engine.

Reads commands one per line (FILE, or standard input when absent or ``-``),
writes each command's events as JSON lines to standard output as it goes.
``seq`` is the 1-based index of the command among non-blank lines. A line that
is not valid JSON, or not an object, is rejected (``bad_command``) like any
other bad command; replay never stops early and exits 0 unless its input
cannot be read.
"""

from __future__ import annotations

import json
import os
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
_READ_BYTES = 1 << 16


def _holds_float(command: dict[str, object]) -> bool:
    """Whether a top-level value is a float (never so in a valid command)."""
    return float in map(type, command.values())


def _exact_numbers(line: bytes, command: dict[str, object]) -> object:
    """``command`` re-read with every JSON integer exact.

    orjson turns an integer literal outside the 64-bit range into a float, so
    ``"order_id": 18446744073709551616`` would look ill-typed (``bad_command``)
    although it is a JSON integer naming no live order (``unknown_order``, as
    the engine answers for that Python int). No valid command holds a float,
    so only such lines are read again, by the standard library, which keeps
    integers exact; one it cannot read (an integer of thousands of digits, or
    nesting deeper than its recursion limit) keeps orjson's reading.
    """
    try:
        exact: object = json.loads(line)
    except (ValueError, RecursionError):
        return command
    return exact


class _Replay:
    """A fresh engine and the encoded events not yet written out."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.engine = Engine()
        self.pending: list[bytes] = []
        self.size = 0
        self.seq = 0

    def line(self, line: bytes) -> None:
        """Run one input line (a blank one is skipped and takes no ``seq``)."""
        if not line.strip():
            return
        self.seq += 1
        try:
            command: object = orjson.loads(line)
        except orjson.JSONDecodeError:
            command = _UNPARSABLE
        else:
            if type(command) is dict and _holds_float(command):
                command = _exact_numbers(line, command)
        engine = self.engine
        for event in engine.execute(command, self.seq):
            chunk = orjson.dumps(engine.encode(event), option=orjson.OPT_APPEND_NEWLINE)
            self.pending.append(chunk)
            self.size += len(chunk)

    def write(self, flush: bool) -> None:
        """Write the pending events (and flush ``out`` when ``flush``)."""
        if self.pending:
            self.out.write(b"".join(self.pending))
            self.pending.clear()
            self.size = 0
        if flush:
            self.out.flush()


def replay_lines(lines: Iterable[bytes], out: BinaryIO, flush_each: bool = False) -> int:
    """Replay ``lines`` into ``out``; return the number of commands applied.

    Output is written in chunks of about 64 KiB, or after every command when
    ``flush_each``.
    """
    run = _Replay(out)
    for line in lines:
        run.line(line)
        if flush_each or run.size >= _FLUSH_BYTES:
            run.write(flush_each)
    run.write(True)
    return run.seq


def replay_fd(fd: int, out: BinaryIO) -> int:
    """Replay what can be read from file descriptor ``fd``; return the number of commands.

    Reads whatever is available (up to 64 KiB at a time) and writes out the
    events of every complete line in it before waiting for more, so a caller
    that feeds a pipe one command at a time and waits for its events is
    answered at once, while a file is still handled in large chunks. Raises
    ``OSError`` when ``fd`` cannot be read.
    """
    run = _Replay(out)
    partial: list[bytes] = []  # the start of a line whose newline has not arrived yet
    while chunk := os.read(fd, _READ_BYTES):
        end = chunk.rfind(b"\n")
        if end < 0:
            partial.append(chunk)
            continue
        lines = chunk[:end].split(b"\n")
        if partial:
            partial.append(lines[0])
            lines[0] = b"".join(partial)
        partial = [chunk[end + 1 :]]
        for line in lines:
            run.line(line)
        run.write(True)
    run.line(b"".join(partial))
    run.write(True)
    return run.seq


@app.command()
def replay(
    file: str = typer.Argument("-", help="JSON-lines command file; '-' or absent: stdin."),
) -> None:
    """Replay JSON-line commands through a fresh engine, printing events as JSON lines."""
    out = sys.stdout.buffer
    if file == "-":
        try:
            replay_fd(sys.stdin.buffer.fileno(), out)
        except OSError as exc:
            typer.echo(f"clob replay: cannot read standard input: {exc.strerror}", err=True)
            raise typer.Exit(1) from exc
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed below, errors reported
    except OSError as exc:
        typer.echo(f"clob replay: cannot read {file}: {exc.strerror}", err=True)
        raise typer.Exit(1) from exc
    with handle:
        try:
            replay_fd(handle.fileno(), out)
        except OSError as exc:
            typer.echo(f"clob replay: cannot read {file}: {exc.strerror}", err=True)
            raise typer.Exit(1) from exc
