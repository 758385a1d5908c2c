"""Child OS processes of ``clob up`` and ``clob bench gateway``: start, kill, stop them all.

Each child runs a ``clob`` subcommand in its own session (so a terminal's
Ctrl-C reaches only the parent, which then stops the children in order) and
appends its output to its own log file.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import IO

import attrs
import trio

from config.load import parse_address
from shard.node.tls import HandshakeFailed, open_client_stream

STOP_GRACE_SECONDS = 5.0


def clob_command() -> list[str]:
    """How to run the ``clob`` CLI with this interpreter's environment."""
    script = Path(sys.executable).with_name("clob")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cli.main import main; main()"]


@attrs.define
class Child:
    name: str
    argv: list[str]
    log_path: Path
    process: trio.Process | None = None
    log_file: IO[bytes] | None = None
    reported_exit: bool = False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class ProcessGroup:
    """Named children; :meth:`stop_all` (SIGTERM, grace, SIGKILL) is safe to call at any time."""

    def __init__(self) -> None:
        self.children: dict[str, Child] = {}

    def add(self, name: str, argv: list[str], log_path: Path) -> Child:
        child = self.children[name] = Child(name, argv, log_path)
        return child

    async def start(self, name: str) -> None:
        child = self.children[name]
        assert not child.running, name
        child.log_path.parent.mkdir(parents=True, exist_ok=True)
        if child.log_file is None:
            child.log_file = child.log_path.open("ab")
        child.reported_exit = False
        child.process = await trio.lowlevel.open_process(
            child.argv, stdout=child.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    def cpu_seconds(self, names: list[str]) -> float:
        """User + system CPU used so far by the named running children (Linux ``/proc``; else 0)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for name in names:
            child = self.children[name]
            if child.process is None or not child.running:
                continue
            try:
                stat = Path(f"/proc/{child.process.pid}/stat").read_text()
            except OSError:
                return 0.0
            fields = stat.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return total / tick

    async def start_all(self) -> None:
        for name in self.children:
            await self.start(name)

    async def kill(self, name: str) -> None:
        """``kill -9`` one child and wait for it to be gone."""
        child = self.children[name]
        if child.process is not None and child.running:
            child.process.kill()
            await child.process.wait()

    def exited(self) -> list[Child]:
        """Children that exited since the last call (each reported once)."""
        gone = []
        for child in self.children.values():
            if child.process is not None and not child.running and not child.reported_exit:
                child.reported_exit = True
                gone.append(child)
        return gone

    async def stop_all(self, grace: float = STOP_GRACE_SECONDS) -> list[str]:
        """SIGTERM every running child, wait up to ``grace``, SIGKILL the rest.

        Shielded from cancellation; returns the names that had to be killed."""
        killed = []
        with trio.CancelScope(shield=True):
            running = [c for c in self.children.values() if c.running]
            for child in running:
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(grace):
                for child in running:
                    assert child.process is not None
                    await child.process.wait()
            for child in running:
                assert child.process is not None
                if child.process.returncode is None:
                    killed.append(child.name)
                    child.process.kill()
                    await child.process.wait()
            for child in self.children.values():
                if child.log_file is not None:
                    child.log_file.close()
                    child.log_file = None
        return killed


async def wait_listening(address: str, timeout: float, tls: ssl.SSLContext | None = None) -> bool:
    """Whether something accepts TCP connections on ``address`` within ``timeout`` seconds.

    With ``tls`` (a TLS listener; ``shard.node.tls.probe_context()`` will do) the
    probe also completes a handshake, so the server does not log it as a failed one.
    """
    host, port = parse_address(address)
    with trio.move_on_after(timeout):
        while True:
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                await trio.sleep(0.1)
                continue
            if tls is None:
                await stream.aclose()
                return True
            try:
                secured = await open_client_stream(stream, tls, host)
            except HandshakeFailed:
                return True  # listening, though it would not complete this handshake
            except OSError:
                await trio.sleep(0.1)  # lost during the handshake: not serving yet
                continue
            await trio.aclose_forcefully(secured)
            return True
    return False
