"""Durability modes and the few blocking file primitives storage is built on.

``fsync`` (the default) makes :meth:`Storage.sync` return only after the data
is on stable storage, and fsyncs the directory after creating, renaming or
deleting files so the names are durable too. ``none`` only hands the bytes to
the operating system: they survive a process crash but not a power loss or
kernel crash. It is unsafe and meant for benchmarks.
"""

from __future__ import annotations

import enum
import os
from pathlib import Path


class Durability(enum.StrEnum):
    FSYNC = "fsync"
    NONE = "none"


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write less)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(path: Path) -> None:
    """Make the names in directory ``path`` (creations, renames, deletions) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
