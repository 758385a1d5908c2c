"""The chaos supervisor's process control and WAL tearing, with stand-in processes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from chaos.proxy import ProxyMesh
from chaos.supervisor import ChaosCluster, ManagedProcess
from chaos.topology import build_cluster, raft_addresses
from config.load import parse_address
from shard.records import Entry, EntryKind, HardState
from shard.storage import open_storage

# A stand-in for a replica: listens on the replica's client port until killed.
_LISTENER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen()
while True:
    time.sleep(1)
"""


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[0]


def stand_in_cluster(tmp_path: Path, spares: int = 0) -> ChaosCluster:
    """A one-market chaos cluster whose replicas are stand-ins that only listen on their
    client ports (with ``spares`` spare replicas configured); no gateway, no proxy running."""
    config = build_cluster(
        tmp_path, markets=[("BTC-USD", "0.01", "0.001")], gateways=0, spares={"BTC-USD": spares}
    )
    processes = {}
    for replica in config.markets[0].replicas:
        port = parse_address(replica.client)[1]
        processes[replica.name] = ManagedProcess(
            replica.name,
            "replica",
            "BTC-USD",
            [sys.executable, "-c", _LISTENER, str(port)],
            tmp_path / "logs" / f"{replica.name}.log",
        )
    meshes = {"BTC-USD": ProxyMesh(raft_addresses(config.markets[0]))}
    return ChaosCluster(tmp_path, config, meshes, processes, {})


@pytest.mark.processes
async def test_start_pause_kill_restart_stop(tmp_path: Path) -> None:
    cluster = stand_in_cluster(tmp_path)
    name = cluster.replicas("BTC-USD")[0]
    try:
        with trio.fail_after(30):
            await cluster.start_all()
        managed = cluster.processes[name]
        assert all(p.running for p in cluster.processes.values())
        assert managed.process is not None
        cluster.pause(name)
        with trio.fail_after(5):
            while _state(managed.process.pid) != "T":
                await trio.sleep(0.01)
        cluster.resume(name)
        with trio.fail_after(5):
            while _state(managed.process.pid) == "T":
                await trio.sleep(0.01)
        await cluster.kill(name)
        assert not cluster.processes[name].running
        assert cluster.exit_codes() == {}, "a process we killed did not exit by itself"
        other = cluster.processes[cluster.replicas("BTC-USD")[2]]
        assert other.process is not None
        other.process.send_signal(9)  # not through the supervisor: a crash
        await other.process.wait()
        assert cluster.exit_codes() == {other.name: [-9]}
        with trio.fail_after(30):
            await cluster.start(name)
        assert managed.running and managed.starts == 2
        await cluster.start(other.name)
        assert cluster.exit_codes() == {other.name: [-9]}, "a restart keeps the crash record"
    finally:
        with trio.CancelScope(shield=True):
            await cluster.stop_all()
    assert not any(p.running for p in cluster.processes.values())


def test_torn_wal_tail_is_cut_and_recovered(tmp_path: Path) -> None:
    cluster = stand_in_cluster(tmp_path)
    name = cluster.replicas("BTC-USD")[1]
    storage, _ = open_storage(cluster.data_dir(name), "none")
    storage.append([Entry(1, i, EntryKind.NORMAL, b"x" * 50) for i in range(1, 6)])
    storage.set_hard_state(HardState(term=1, vote=None, commit=3))
    storage.sync()
    storage.append([Entry(1, 6, EntryKind.NORMAL, b"y" * 50)])
    storage.sync()
    storage.close()
    torn = cluster.tear_wal(name, 7)
    assert torn is not None and torn[1] == 7 and torn[0].startswith("wal-")
    _, recovered = open_storage(cluster.data_dir(name), "none")
    indexes = [e.index for e in recovered.entries]
    assert indexes == [1, 2, 3, 4, 5], "the torn last record is dropped, the rest kept"
