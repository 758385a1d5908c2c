"""Blocking storage calls (fsync, snapshot writes) in a worker thread, cheaply.

Every command batch costs each replica one fsync, run off the trio thread so
that sockets keep being served meanwhile. ``trio.to_thread.run_sync`` pays
per call for a capacity limiter, a context copy, a cancel scope and renaming
the OS thread twice (two syscalls); :func:`run_off_thread` hands the call to
trio's thread cache directly (``trio.lowlevel.start_thread_soon``) and is
woken with ``run_sync_soon``. Measured on this project's 2-core machine:
about 150-200 µs of CPU per call down to 115-125 µs, on every replica for
every batch.

    await run_off_thread(storage.sync)   # its result, or its exception re-raised

Like ``trio.to_thread.run_sync`` (by default) the call is not abandoned on
cancellation: the caller waits for it to finish, so storage is never closed
under a running fsync, and the cancellation is delivered afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import outcome
import trio

T = TypeVar("T")


def _abort_never(_: Any) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED  # wait for the call; a cancellation comes after


async def run_off_thread(fn: Callable[[], T]) -> T:
    """Run ``fn()`` in one of trio's cached worker threads; its result or its exception."""
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: outcome.Outcome[T]) -> None:  # runs in the worker thread
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    trio.lowlevel.start_thread_soon(fn, deliver)
    value: T = await trio.lowlevel.wait_task_rescheduled(_abort_never)
    return value
