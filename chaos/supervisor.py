"""Starts, stops, kills, pauses and restarts the OS processes of a local chaos cluster.

    async with open_cluster(root, users=["u1", "u2"]) as cluster:
        await cluster.wait_leaders()
        leader = await cluster.leader("BTC-USD")
        await cluster.kill(leader)        # kill -9
        await cluster.start(leader)       # same data dir: it recovers
        cluster.pause("gw-1"); cluster.resume("gw-1")   # SIGSTOP / SIGCONT

Replicas run ``clob node --config <own file> --node NAME`` and gateways
``clob gateway --config <real file> --name NAME`` with the project's own
interpreter; every process writes to ``root/logs/NAME.log`` (appended across
restarts). :func:`open_cluster` owns the proxies (one :class:`ProxyMesh` per
market) and, on exit, stops every process it started, even when cancelled.

Membership: ``replicas(market)`` are the group's current members as the
harness last learnt them (:mod:`chaos.membership`); spares listed in the
configuration start only when a ``replace_follower`` fault takes one, and a
removed replica is *retired*: stopped for good, its data directory kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from chaos.committed import CommittedEntry
from chaos.membership import GroupView, Reconciliation, newest_leader, parse_view
from chaos.proxy import Link, ProxyMesh
from chaos.topology import build_cluster, raft_addresses, with_peer_addresses
from cli.processes import clob_command
from config.load import parse_address
from config.ports import free_ports
from config.render import write_config
from config.schema import ClusterConfig, MarketConfig, TimingConfig
from config.secret import read_secret
from gateway.auth import KeyStore
from shard.node import protocol
from shard.node.api import NodeStatus, ShardError
from shard.node.client import ShardClient
from shard.node.connection import ConnectFailed, ConnectionLost
from shard.node.tls import HandshakeFailed, client_context, open_client_stream, probe_context
from shard.observability import get_logger
from shard.storage.segments import HEADER_SIZE, list_segments

log = get_logger("chaos.supervisor")

_STOP_GRACE_S = 15.0  # a loaded 2-core machine can take seconds to tear 8 processes down
_STATUS_TIMEOUT_S = 1.0  # one raw status request (a paused replica must not stall a poll)


@attrs.define
class ManagedProcess:
    name: str
    kind: str  # "replica" | "gateway"
    market: str | None
    argv: list[str]
    log_path: Path
    process: trio.Process | None = None
    paused: bool = False
    starts: int = 0
    stopping: bool = False  # we killed or stopped it: its exit is expected
    crashes: list[int] = attrs.field(factory=list)  # exit codes of exits we did not cause

    def note_exit(self) -> None:
        """Remember an exit we did not cause (before the process object is replaced)."""
        if self.process is not None and self.process.returncode is not None:
            if not self.stopping:
                self.crashes.append(self.process.returncode)
            self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class ChaosCluster:
    """The processes and proxies of one chaos topology (build it with :func:`open_cluster`)."""

    def __init__(
        self,
        root: Path,
        cluster: ClusterConfig,
        meshes: dict[str, ProxyMesh],
        processes: dict[str, ManagedProcess],
        api_keys: dict[str, str],
    ) -> None:
        self.root = root
        self.config = cluster
        self.meshes = meshes
        self.processes = processes
        self.api_keys = api_keys
        self.secret = read_secret(cluster)
        self.tls = client_context(cluster)  # None: plain TCP to the replicas
        # the CA a wss:// gateway is verified against (None: the gateways serve ws://)
        self.ca_file = cluster.tls.ca_file if cluster.tls is not None else None
        # the current members of each group; a spare joins, a removed replica leaves
        self.members: dict[str, list[str]] = {
            m.name: list(m.initial_voters()) for m in cluster.markets
        }
        self.retired: set[str] = set()  # removed (or never joined): never started again
        # the applied events of each retired replica, read just before it was stopped
        # (they are in its memory only, and may cover seqs no member still streams)
        self.departed: dict[str, list[CommittedEntry]] = {}
        # admin requests and raw status go through clients that know every name (the
        # leader may be a spare); status polls only ask the members
        self._admin = {
            m.name: ShardClient(m, retry_for=2.0, secret=self.secret, tls=self.tls)
            for m in cluster.markets
        }
        # status clients per set of replicas asked (one is skipped when it is paused:
        # it would slow every poll)
        self._status_clients: dict[tuple[str, ...], ShardClient] = {}

    # -- lookups -------------------------------------------------------------------------------

    def market_of(self, name: str) -> MarketConfig:
        found = self.config.replica(name)
        assert found is not None, name
        return found[0]

    def replicas(self, market: str) -> list[str]:
        """The group's current members (voters and learners), in configuration order."""
        return list(self.members[market])

    def pool(self, market: str) -> list[str]:
        """Every replica name the configuration lists for ``market``, spares included."""
        config = self.config.market(market)
        assert config is not None, market
        return [r.name for r in config.replicas]

    def take_spare(self, market: str) -> str | None:
        """A spare that never ran (fresh data directory), now counted as a member; or None."""
        for name in self.pool(market):
            managed = self.processes[name]
            if name not in self.members[market] and name not in self.retired and not managed.starts:
                self.members[market].append(name)
                return name
        return None

    def active(self) -> list[str]:
        """The processes that should run: every member and every gateway."""
        members = {n for names in self.members.values() for n in names}
        return [
            name
            for name, managed in self.processes.items()
            if managed.kind == "gateway" or name in members
        ]

    def gateway_urls(self) -> dict[str, str]:
        return {
            g.name: f"{'wss' if g.cert_file else 'ws'}://{g.listen}/" for g in self.config.gateways
        }

    def data_dir(self, name: str) -> Path:
        found = self.config.replica(name)
        assert found is not None, name
        return Path(found[1].data_dir)

    # -- processes -----------------------------------------------------------------------------

    async def start(self, name: str) -> None:
        """Start (or restart) a process; returns once it accepts TCP connections."""
        managed = self.processes[name]
        assert not managed.running, f"{name} is already running"
        managed.note_exit()
        managed.stopping = False
        managed.log_path.parent.mkdir(parents=True, exist_ok=True)
        with managed.log_path.open("ab") as out:
            managed.process = await trio.lowlevel.open_process(
                managed.argv, stdout=out, stderr=subprocess.STDOUT, cwd=str(self.root)
            )
        managed.paused = False
        managed.starts += 1
        log.info("started", proc=name, pid=managed.process.pid, starts=managed.starts)
        await self._wait_listening(name)

    async def _wait_listening(self, name: str, timeout: float = 120.0) -> None:
        managed = self.processes[name]
        found = self.config.replica(name)
        if found is not None:
            address = found[1].client
            # a TLS replica expects the client certificate; a probe without one is logged
            context = self.tls
        else:
            address = next(g.listen for g in self.config.gateways if g.name == name)
            context = probe_context() if self.ca_file is not None else None
        host, port = parse_address(address)
        with trio.fail_after(timeout):
            while True:
                if not managed.running:
                    raise RuntimeError(f"{name} exited early; see {managed.log_path}")
                try:
                    stream = await trio.open_tcp_stream(host, port)
                except OSError:
                    await trio.sleep(0.05)
                    continue
                if context is None:
                    await stream.aclose()
                    return
                try:
                    secured = await open_client_stream(stream, context, host)
                except HandshakeFailed:
                    return  # listening; it refused this handshake (its log says why)
                except OSError:
                    await trio.sleep(0.05)  # lost during the handshake: not serving yet
                    continue
                await trio.aclose_forcefully(secured)
                return

    async def kill(self, name: str) -> None:
        """``kill -9`` and reap."""
        managed = self.processes[name]
        if managed.process is None or not managed.running:
            return
        managed.stopping = True
        managed.process.send_signal(signal.SIGKILL)
        await managed.process.wait()
        managed.paused = False
        log.info("killed", proc=name)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process is frozen (its sockets stay open, as with a long GC pause)."""
        managed = self.processes[name]
        if managed.process is not None and managed.running:
            managed.process.send_signal(signal.SIGSTOP)
            managed.paused = True

    def resume(self, name: str) -> None:
        managed = self.processes[name]
        if managed.process is not None and managed.running and managed.paused:
            managed.process.send_signal(signal.SIGCONT)
            managed.paused = False

    async def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        managed = self.processes[name]
        process = managed.process
        if process is None or not managed.running:
            return
        managed.stopping = True
        self.resume(name)
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(_STOP_GRACE_S):
            await process.wait()
            return
        log.warning("did not stop in time; killing", proc=name)
        await self.kill(name)

    async def start_all(self) -> None:
        """Start every member replica (in parallel), then every gateway."""
        active = self.active()
        for kind in ("replica", "gateway"):
            async with trio.open_nursery() as nursery:
                for name in active:
                    if self.processes[name].kind == kind:
                        nursery.start_soon(self.start, name)

    async def stop_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for name in self.processes:
                nursery.start_soon(self.stop, name)
        for client in [*self._admin.values(), *self._status_clients.values()]:
            await client.aclose()

    def exit_codes(self) -> dict[str, list[int]]:
        """Processes that exited by themselves (not killed or stopped by us): their exit codes."""
        for managed in self.processes.values():
            if not managed.running:
                managed.note_exit()
        return {name: m.crashes for name, m in self.processes.items() if m.crashes}

    # -- storage faults ------------------------------------------------------------------------

    def tear_wal(self, name: str, nbytes: int) -> tuple[str, int] | None:
        """Cut ``nbytes`` off the newest WAL segment of a stopped replica (a torn write).

        Returns (segment file name, bytes removed), or None when there is no
        record to tear.
        """
        assert not self.processes[name].running, f"tear the WAL of a stopped replica, not {name}"
        segments = list_segments(self.data_dir(name))
        if not segments:
            return None
        path = segments[-1][1]
        size = path.stat().st_size
        cut = min(nbytes, size - HEADER_SIZE)
        if cut <= 0:
            return None
        os.truncate(path, size - cut)
        return path.name, cut

    # -- status --------------------------------------------------------------------------------

    def _status_client(self, market: str, names: Sequence[str]) -> ShardClient:
        key = (market, *names)
        client = self._status_clients.get(key)
        if client is None:
            config = self.config.market(market)
            assert config is not None, market
            asked = tuple(r for r in config.replicas if r.name in names)
            client = ShardClient(
                attrs.evolve(config, replicas=asked),
                retry_for=1.0,
                secret=self.secret,
                tls=self.tls,
            )
            self._status_clients[key] = client
        return client

    async def status(self, market: str) -> list[NodeStatus]:
        """The members' statuses, in configuration order."""
        return await self._status_client(market, self.members[market]).status()

    async def checkpoint(self, name: str) -> tuple[int, int, str]:
        """Ask one replica to snapshot now: (log index, seq, state digest)."""
        market = self.market_of(name).name
        reply = await self._admin[market].admin_on(name, "snapshot")
        return int(reply["index"]), int(reply["seq"]), str(reply["digest"])

    async def admin(self, market: str, action: str, **fields: object) -> protocol.Message:
        """An admin action on ``market``'s leader (as ``clob admin`` sends it)."""
        return await self._admin[market].admin(action, **fields)

    async def transfer_leader(self, market: str, target: str) -> None:
        """Ask ``market``'s leader to hand leadership to ``target`` (``clob admin
        transfer-leader``); returns once asked, not once done."""
        await self.admin(market, "transfer_leader", target=target)

    async def group_view(self, market: str) -> GroupView | None:
        """The group as its newest leader sees it (every running replica of ``market`` is
        asked, a spare being added included); None when no leader answers."""
        views: list[GroupView | None] = []

        async def ask(name: str) -> None:
            reply = await self._raw_status(name)
            if reply is not None:
                views.append(parse_view(reply))

        async with trio.open_nursery() as nursery:
            for name in self.pool(market):
                managed = self.processes[name]
                if managed.running and not managed.paused:
                    nursery.start_soon(ask, name)
        return newest_leader(views)

    async def applied_seq(self, name: str) -> int | None:
        """The seq ``name`` has applied, from its status (None: it does not answer)."""
        reply = await self._raw_status(name)
        if reply is None:
            return None
        try:
            protocol.raise_for_error(reply)
        except ShardError as exc:
            log.debug("status refused", proc=name, error=repr(exc))
            return None
        return int(reply["applied_seq"])

    async def _raw_status(self, name: str) -> protocol.Message | None:
        """One replica's status reply, asked directly (it may be a spare being added);
        None when it does not answer within a second. Its connection is then closed: a
        request may still be pending on it, so the next one starts afresh."""
        connection = self._admin[self.market_of(name).name].connection(name)
        with trio.move_on_after(_STATUS_TIMEOUT_S):
            try:
                return await connection.request({"t": "status"})
            except (ConnectFailed, ConnectionLost, ShardError) as exc:
                log.debug("status failed", proc=name, error=repr(exc))
        await connection.aclose()
        return None

    async def apply(self, market: str, plan: Reconciliation) -> None:
        """Make the processes match a reconciled membership: start the members that do not
        run, stop (for good) the replicas that left the group."""
        self.members[market] = list(plan.members)
        for name in plan.stop:
            self.retired.add(name)
            await self.stop(name)
            log.info("retired", proc=name, market=market)
        for name in plan.start:
            await self.start(name)

    async def leader(self, market: str, *, skip: str | None = None) -> str | None:
        """The leader with the highest term among the reachable replicas (but ``skip``)."""
        if skip is None:
            statuses = await self.status(market)
        else:
            others = [n for n in self.members[market] if n != skip]
            statuses = await self._status_client(market, others).status()
        leaders = [s for s in statuses if s.reachable and s.role == "leader"]
        if not leaders:
            return None
        return max(leaders, key=lambda s: s.term).name

    async def wait_leaders(self, timeout: float = 60.0) -> None:
        with trio.fail_after(timeout):
            for market in self.config.markets:
                while await self.leader(market.name) is None:
                    await trio.sleep(0.1)


def proxy_ports(cluster: ClusterConfig, meshes: Iterable[ProxyMesh]) -> list[dict[Link, int]]:
    """A port for every link of every mesh, none of them one the topology uses.

    The topology's ports were free when it was built, but nothing holds them until
    its processes start; a proxy listening on any free port could take one."""
    taken = {parse_address(r.raft)[1] for m in cluster.markets for r in m.replicas}
    taken |= {parse_address(r.client)[1] for m in cluster.markets for r in m.replicas}
    taken |= {parse_address(g.listen)[1] for g in cluster.gateways}
    links = [list(mesh.proxies) for mesh in meshes]
    count = sum(len(x) for x in links)
    ports = iter([p for p in free_ports(count + len(taken)) if p not in taken])
    return [{link: next(ports) for link in mesh_links} for mesh_links in links]


@asynccontextmanager
async def open_cluster(
    root: Path,
    *,
    users: Sequence[str],
    durability: str = "fsync",
    timing: TimingConfig | None = None,
    start: bool = True,
    snapshot_every: int | None = None,
    spares: Mapping[str, int] | None = None,
    tls: bool = False,
) -> AsyncIterator[ChaosCluster]:
    """Generate the topology under ``root``, start proxies and processes; stop all on exit.

    ``snapshot_every`` (applied entries between a replica's snapshots) is passed to
    every replica; small values make a short run compact its logs and install snapshots.
    ``spares`` (market -> count) lists spare replicas, started only when a fault adds one.
    ``tls``: mutual TLS on every replica link and wss:// gateways, under a CA made here.
    """
    root.mkdir(parents=True, exist_ok=True)
    cluster = build_cluster(
        root, durability=durability, timing=timing, secret=True, spares=spares, tls=tls
    )
    base = write_config(cluster, root / "cluster.toml")
    store = KeyStore(cluster.keys_file)
    api_keys = {user: store.create(user).api_key for user in users}
    command = clob_command()
    async with trio.open_nursery() as nursery:
        meshes = {m.name: ProxyMesh(raft_addresses(m)) for m in cluster.markets}
        for mesh, ports in zip(meshes.values(), proxy_ports(cluster, meshes.values()), strict=True):
            await nursery.start(mesh.serve, ports)
        processes: dict[str, ManagedProcess] = {}
        for market in cluster.markets:
            mesh = meshes[market.name]
            for replica in market.replicas:
                own = with_peer_addresses(cluster, replica.name, mesh.address)
                path = write_config(own, root / "nodes" / f"{replica.name}.toml")
                processes[replica.name] = ManagedProcess(
                    replica.name,
                    "replica",
                    market.name,
                    [*command, "node", "--config", str(path), "--node", replica.name]
                    + ([] if snapshot_every is None else ["--snapshot-every", str(snapshot_every)]),
                    root / "logs" / f"{replica.name}.log",
                )
        for gateway in cluster.gateways:
            processes[gateway.name] = ManagedProcess(
                gateway.name,
                "gateway",
                None,
                [*command, "gateway", "--config", str(base), "--name", gateway.name],
                root / "logs" / f"{gateway.name}.log",
            )
        chaos = ChaosCluster(root, cluster, meshes, processes, api_keys)
        try:
            if start:
                await chaos.start_all()
            yield chaos
        finally:
            with trio.CancelScope(shield=True):
                await chaos.stop_all()
            nursery.cancel_scope.cancel()
