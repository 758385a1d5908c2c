"""TLS: certificates from ``clob admin create-certs``, mutual TLS on every replica link
(client port, Raft peer links, subscriptions), wss:// gateways, and the configuration.

Everything runs in-process over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import logging
import ssl
import stat
import time
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from trio_websocket import ConnectionTimeout
from typer.testing import CliRunner

import cli.certs  # registers create-certs
import cli.client  # noqa: F401  (registers the client commands)
from cli.apps import app
from cli.certs import CertificateError, create_certificates, with_certificates
from cli.client import unreachable
from cli.processes import wait_listening
from config.load import ConfigError, load_config, structure_config
from config.ports import free_ports
from config.render import render_toml, write_config
from config.schema import ClusterConfig, GatewayConfig, MarketConfig, ReplicaConfig
from config.secret import create_secret
from gateway.assembly import run_gateway
from gateway.auth import KeyStore
from gateway.client import open_client
from shard.node.api import Unavailable
from shard.node.client import ShardClient
from shard.node.clientserver import ClientServer
from shard.node.framing import FrameDecoder, encode_frame
from shard.node.options import ReplicaOptions
from shard.node.tls import (
    HandshakeFailed,
    TlsError,
    client_context,
    gateway_context,
    open_client_stream,
    probe_context,
    replica_contexts,
)
from shard.node.transport import PeerTransport
from tests.node_cluster import write_topology
from tests.test_node_client import FakeReplica, Group
from tests.test_node_runtime import Group as ReplicaGroup
from tests.test_node_runtime import order, wait_until
from tests.test_transport import Inbox, wait_for

CN = NameOID.COMMON_NAME


def tls_topology(
    tmp_path: Path, *, gateway: bool = False, secret: bool = False
) -> tuple[ClusterConfig, Path]:
    """A three-replica topology (plus a gateway) with TLS on, written and loaded back."""
    _, plain = write_topology(tmp_path)
    if gateway:
        port = free_ports(1)[0]
        gateways = (GatewayConfig("gw-1", f"127.0.0.1:{port}"),)
        plain = attrs.evolve(plain, gateways=gateways, keys_file=str(tmp_path / "keys.json"))
    if secret:
        create_secret(tmp_path / "cluster.secret")
        plain = attrs.evolve(plain, secret_file=str(tmp_path / "cluster.secret"))
    certs = tmp_path / "tls"
    create_certificates(plain, certs)
    cluster = with_certificates(plain, certs)
    write_config(cluster, tmp_path / "tls.toml")  # renders, loads back, compares
    return cluster, certs


def foreign_client(tmp_path: Path, cluster: ClusterConfig) -> ssl.SSLContext:
    """A client context whose certificate comes from another CA (but trusts ours)."""
    other = tmp_path / "other-ca"
    create_certificates(cluster, other)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    assert cluster.tls is not None
    context.load_verify_locations(cluster.tls.ca_file)
    context.load_cert_chain(other / "client.crt", other / "client.key")
    return context


def no_certificate(cluster: ClusterConfig) -> ssl.SSLContext:
    """A client context that trusts our CA but presents no certificate."""
    assert cluster.tls is not None
    return ssl.create_default_context(cafile=cluster.tls.ca_file)


# -- certificates ------------------------------------------------------------------------------


def test_create_certs_makes_a_ca_and_a_certificate_per_replica_gateway_and_client(
    tmp_path: Path,
) -> None:
    _, plain = write_topology(tmp_path / "t")
    cluster = attrs.evolve(plain, gateways=(GatewayConfig("gw-1", "gw.example.org:8700"),))
    config = write_config(cluster, tmp_path / "cluster.toml")
    out = tmp_path / "certs"
    runner = CliRunner()
    made = runner.invoke(app, ["admin", "create-certs", "--config", str(config), "--out", str(out)])
    assert made.exit_code == 0, made.output
    names = [r.name for r in cluster.markets[0].replicas]
    expected = {"ca", "client", "gw-1", *names}
    assert {p.name for p in out.iterdir()} == {f"{n}.{e}" for n in expected for e in ("crt", "key")}
    for path in out.glob("*.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    replica = x509.load_pem_x509_certificate((out / f"{names[0]}.crt").read_bytes())
    assert replica.subject.get_attributes_for_oid(CN)[0].value == names[0]
    assert replica.issuer == ca.subject
    san = replica.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    uses = replica.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(uses) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    gw = x509.load_pem_x509_certificate((out / "gw-1.crt").read_bytes())
    san = gw.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example.org"]
    client = x509.load_pem_x509_certificate((out / "client.crt").read_bytes())
    uses = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(uses) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    before = (out / "client.key").read_bytes()
    again = runner.invoke(
        app, ["admin", "create-certs", "--config", str(config), "--out", str(out)]
    )
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    assert (out / "client.key").read_bytes() == before
    # one more certificate signed by the existing CA; then everything anew with --force
    args = ["admin", "create-certs", "--config", str(config), "--out", str(out)]
    assert runner.invoke(app, [*args, "--only", "client", "--force"]).exit_code == 0
    assert (out / "client.key").read_bytes() != before
    renewed = x509.load_pem_x509_certificate((out / "client.crt").read_bytes())
    assert renewed.issuer == ca.subject
    assert (out / "ca.crt").read_bytes() == ca.public_bytes(Encoding.PEM)
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert x509.load_pem_x509_certificate((out / "ca.crt").read_bytes()) != ca


# -- replica links -----------------------------------------------------------------------------


async def test_a_replica_group_commits_over_mutual_tls_and_refuses_other_clients(
    tmp_path: Path,
) -> None:
    cluster, _ = tls_topology(tmp_path, secret=True)  # TLS and the cluster secret together
    secret = (tmp_path / "cluster.secret").read_bytes().strip()
    market = cluster.markets[0]
    async with trio.open_nursery() as nursery:
        group = ReplicaGroup(cluster, nursery, ReplicaOptions())
        for replica in market.replicas:
            await group.start(replica.name)
        await wait_until(lambda: group.leader() is not None and group.leader().rsm.seq >= 1)  # type: ignore[union-attr]
        tls = client_context(cluster)
        async with ShardClient(market, "good", secret=secret, tls=tls, retry_for=10.0) as good:
            results = [await good.submit(order(i)) for i in range(5)]
            first = results[0].seq
            async with good.subscribe(from_seq=first) as items:
                with trio.fail_after(10):
                    seen = [(await items.__anext__()).seq for _ in range(5)]
            assert seen == [r.seq for r in results]
            for context in (None, no_certificate(cluster), foreign_client(tmp_path, cluster)):
                async with ShardClient(
                    market, "bad", secret=secret, tls=context, retry_for=0.5
                ) as intruder:
                    with pytest.raises(Unavailable):
                        await intruder.submit(order(99))
            # the replicas carry on serving the good client, on its connections and new ones
            assert (await good.submit(order(5))).seq == results[-1].seq + 1
        async with ShardClient(market, "fresh", secret=secret, tls=tls) as fresh:
            assert (await fresh.submit(order(6))).seq == results[-1].seq + 2
        leader = group.leader()
        assert leader is not None
        assert all(r.rsm.seq <= leader.rsm.seq for r in group.replicas.values())
        nursery.cancel_scope.cancel()


async def _read_until_closed(stream: trio.abc.Stream) -> list[Any]:
    decoder = FrameDecoder()
    with trio.fail_after(5):
        try:
            while data := await stream.receive_some(4096):
                decoder.feed(data)
        except trio.BrokenResourceError:
            pass
    return list(decoder.messages())


async def test_a_client_port_refuses_failed_handshakes_and_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster, _ = tls_topology(tmp_path)
    contexts = replica_contexts(cluster, "btc-usd-1")
    assert contexts is not None
    fake = FakeReplica("r1", Group())
    address = f"127.0.0.1:{free_ports(1)[0]}"
    server = ClientServer(fake, address, node="r1", tls=contexts[0])
    market = MarketConfig("M", "1", "1", (ReplicaConfig("r1", "127.0.0.1:1", address, "d/r1"),))
    caplog.set_level(logging.WARNING, logger="shard.node.clientserver")
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        async with ShardClient(market, "good", tls=client_context(cluster)) as good:
            assert (await good.submit({"n": 1})).seq == 1  # its connection stays open below
            # plain TCP speaking the protocol: no reply at all, the connection is closed
            async with await trio.open_tcp_stream("127.0.0.1", server.port) as plain:
                await plain.send_all(encode_frame({"t": "status", "rid": 1}))
                assert await _read_until_closed(plain) == []
            for context in (no_certificate(cluster), foreign_client(tmp_path, cluster)):
                async with ShardClient(market, "bad", tls=context, retry_for=0.3) as intruder:
                    with pytest.raises(Unavailable):
                        await intruder.submit({"n": 2})
            assert (await good.submit({"n": 3})).seq == 2
        assert server.tls_refused >= 3
        refusals = [r for r in caplog.records if "TLS handshake failed" in r.getMessage()]
        assert len(refusals) == 1  # once per 1,000, not once per connection
        nursery.cancel_scope.cancel()


async def test_peer_links_need_a_certificate_from_the_cluster_ca_that_names_the_peer(
    tmp_path: Path,
) -> None:
    cluster, _ = tls_topology(tmp_path)
    names = [r.name for r in cluster.markets[0].replicas][:2]
    port_a, port_b = free_ports(2)
    peers = {names[0]: f"127.0.0.1:{port_a}", names[1]: f"127.0.0.1:{port_b}"}

    def transport(name: str, tls: Any, inbox: Inbox) -> PeerTransport:
        return PeerTransport("c1", name, peers[name], peers, deliver=inbox, tls=tls)

    got_a, got_b = Inbox(), Inbox()
    a = transport(names[0], replica_contexts(cluster, names[0]), got_a)
    b = transport(names[1], replica_contexts(cluster, names[1]), got_b)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: a.connected(names[1]) and b.connected(names[0]))
        a.send(names[1], {"hello": "b"})
        b.send(names[0], [1, 2, 3])
        await wait_for(lambda: bool(got_a) and bool(got_b))
        assert got_b == [(names[0], {"hello": "b"})] and got_a == [(names[1], [1, 2, 3])]
        nursery.cancel_scope.cancel()

    # b holds a certificate of another CA: neither side links; a counts the refusals
    create_certificates(cluster, tmp_path / "other-ca")
    other = replica_contexts(with_certificates(cluster, tmp_path / "other-ca"), names[1])
    a = transport(names[0], replica_contexts(cluster, names[0]), Inbox())
    b = transport(names[1], other, Inbox())
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: a.tls_refused > 0 and b.tls_refused > 0)
        await wait_for(lambda: b.statistics()[names[0]].last_error is not None)
        assert not a.connected(names[1]) and not b.connected(names[0])
        nursery.cancel_scope.cancel()

    # b dials with no certificate at all: a refuses the handshake (b sees the connection
    # end; the reason is in a's log: trio closes a failed handshake without the alert)
    listener, _ = replica_contexts(cluster, names[1])  # type: ignore[misc]
    a = transport(names[0], replica_contexts(cluster, names[0]), Inbox())
    b = transport(names[1], (listener, no_certificate(cluster)), Inbox())
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: a.tls_refused > 0)
        await wait_for(lambda: b.statistics()[names[0]].last_error is not None)
        await wait_for(lambda: a.connected(names[1]))  # a's own link (a's certificate) is fine
        assert not b.connected(names[0])
        nursery.cancel_scope.cancel()

    # b presents the shared client certificate (signed by our CA): a refuses its hello
    impostor_dialer = client_context(cluster)
    a = transport(names[0], replica_contexts(cluster, names[0]), Inbox())
    b = transport(names[1], (listener, impostor_dialer), Inbox())
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(
            lambda: "certificate is for 'client'" in (b.statistics()[names[0]].last_error or "")
        )
        assert not b.connected(names[0])
        nursery.cancel_scope.cancel()


# -- gateways ----------------------------------------------------------------------------------


async def test_a_gateway_serves_wss_to_clients_that_trust_its_ca(tmp_path: Path) -> None:
    cluster, certs = tls_topology(tmp_path, gateway=True)
    api_key = KeyStore(cluster.keys_file).create("alice").api_key
    async with trio.open_nursery() as nursery:
        group = ReplicaGroup(cluster, nursery, ReplicaOptions())
        for replica in cluster.markets[0].replicas:
            await group.start(replica.name)
        server = await nursery.start(run_gateway, cluster, "gw-1")
        url = f"wss://127.0.0.1:{server.port}/"
        assert await wait_listening(cluster.gateways[0].listen, 5, probe_context())
        async with open_client(url, api_key=api_key, ca_file=str(certs / "ca.crt")) as client:
            with trio.fail_after(20):
                reply = await client.new_order("BTC-USD", "buy", "1", "100.00")
            assert reply["events"][0]["type"] == "accepted"
            [live] = await client.orders("BTC-USD")
            assert live["price"] == "100.00"
        # the system trust store does not know our CA: refused at once, with the reason
        with pytest.raises(HandshakeFailed, match="certificate verify failed"):
            async with open_client(url, api_key=api_key):
                pass
        nursery.cancel_scope.cancel()


def test_client_commands_check_their_ca_file(tmp_path: Path) -> None:
    runner = CliRunner()
    plain = runner.invoke(app, ["markets", "--url", "ws://127.0.0.1:1/", "--ca-file", "x.pem"])
    assert plain.exit_code == 2 and "wss://" in plain.output
    missing = runner.invoke(
        app, ["markets", "--url", "wss://127.0.0.1:1/", "--ca-file", str(tmp_path / "no.pem")]
    )
    assert missing.exit_code == 2 and "cannot read" in missing.output


# -- configuration -----------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "cluster_id": "c",
    "markets": [
        {
            "name": "M",
            "tick_size": "1",
            "lot_size": "1",
            "replicas": [
                {
                    "name": "r1",
                    "raft": "127.0.0.1:7001",
                    "client": "127.0.0.1:7002",
                    "data_dir": "d",
                    "cert_file": "tls/r1.crt",
                    "key_file": "tls/r1.key",
                }
            ],
        }
    ],
    "gateways": [{"name": "g", "listen": "127.0.0.1:8700", "cert_file": "tls/g.crt"}],
    "tls": {"client_cert_file": "tls/client.crt", "client_key_file": "tls/client.key"},
}


def test_configuration_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        structure_config(BASE, "x.toml")
    assert "x.toml: tls.ca_file" in str(info.value)
    tls = {**BASE["tls"], "ca_file": "tls/ca.crt"}
    with pytest.raises(ConfigError) as info:
        structure_config({**BASE, "tls": tls}, "x.toml")
    assert [p for p, _ in info.value.problems] == ["gateways[0].key_file"]
    replica = {k: v for k, v in BASE["markets"][0]["replicas"][0].items() if k != "key_file"}
    markets = [{**BASE["markets"][0], "replicas": [replica]}]
    with pytest.raises(ConfigError) as info:
        structure_config({**BASE, "markets": markets, "gateways": [], "tls": tls}, "x.toml")
    assert [p for p, _ in info.value.problems] == ["markets[0].replicas[0].key_file"]
    without_tls = {k: v for k, v in BASE.items() if k not in ("tls", "gateways")}
    with pytest.raises(ConfigError) as info:
        structure_config(without_tls, "x.toml")
    assert "markets[0].replicas[0].cert_file: set, but there is no [tls]" in str(info.value)


def test_missing_or_wrong_tls_files_name_the_key(tmp_path: Path) -> None:
    cluster, certs = tls_topology(tmp_path, gateway=True)
    assert "[tls]" in render_toml(cluster) and load_config(tmp_path / "tls.toml") == cluster
    name = cluster.markets[0].replicas[1].name
    (certs / f"{name}.crt").unlink()
    with pytest.raises(TlsError, match=r"markets\[0\]\.replicas\[1\]\.cert_file: .*cannot read"):
        replica_contexts(cluster, name)
    (certs / "client.key").write_bytes((certs / "gw-1.key").read_bytes())  # another key
    with pytest.raises(TlsError, match=r"tls\.client_cert_file, tls\.client_key_file"):
        client_context(cluster)
    (certs / "ca.crt").unlink()
    with pytest.raises(TlsError, match=r"tls\.ca_file: .*cannot read"):
        client_context(cluster)
    (certs / "gw-1.key").unlink()
    with pytest.raises(TlsError, match=r"gateways\[0\]\.key_file"):
        gateway_context(cluster, "gw-1")
    plain, _ = write_topology(tmp_path / "plain")
    loaded = load_config(plain)
    assert loaded.tls is None and "[tls]" not in render_toml(loaded)
    assert replica_contexts(loaded, loaded.markets[0].replicas[0].name) is None
    assert client_context(loaded) is None


def test_the_three_machine_example_has_tls_on_and_local_stays_plain() -> None:
    root = Path(__file__).resolve().parent.parent / "config"
    example = load_config(root / "three-machines.toml")
    assert example.tls is not None and example.tls.ca_file.endswith("/ca.crt")
    for market in example.markets:
        for replica in market.replicas:
            assert replica.cert_file == f"/etc/clob/tls/{replica.name}.crt"
    assert all(g.cert_file and g.key_file for g in example.gateways)
    local = load_config(root / "local.toml")
    assert local.tls is None and all(g.cert_file is None for g in local.gateways)


def test_the_shard_benchmark_topology_can_turn_tls_on(tmp_path: Path) -> None:
    from cli.bench_shard import write_topology as bench_topology

    cluster = load_config(bench_topology(tmp_path, "none", tls=True))
    assert client_context(cluster) is not None
    for replica in cluster.markets[0].replicas:
        assert replica_contexts(cluster, replica.name) is not None


def test_clob_node_refuses_to_start_without_its_certificate(tmp_path: Path) -> None:
    import cli.node  # noqa: F401  (registers `clob node`)

    cluster, certs = tls_topology(tmp_path)
    name = cluster.markets[0].replicas[0].name
    (certs / f"{name}.key").unlink()
    config = str(tmp_path / "tls.toml")
    result = CliRunner().invoke(app, ["node", "--config", config, "--node", name])
    assert result.exit_code == 2
    assert f"{config}: markets[0].replicas[0].key_file: " in result.output


@pytest.mark.processes
def test_clob_node_processes_serve_mutual_tls_and_clob_admin_reaches_them(tmp_path: Path) -> None:
    import subprocess
    import sys

    import cli.admin  # noqa: F401  (registers `clob admin status`)

    cluster, _ = tls_topology(tmp_path)
    config = tmp_path / "tls.toml"
    market = cluster.markets[0]
    code = "from cli.main import main; main()"
    processes = []
    logs = []
    try:
        for replica in market.replicas:
            log = (tmp_path / f"{replica.name}.log").open("wb")
            logs.append(log)
            argv = [sys.executable, "-c", code, "node", "--config", str(config)]
            processes.append(
                subprocess.Popen(
                    [*argv, "--node", replica.name], stdout=log, stderr=subprocess.STDOUT
                )
            )

        async def submit() -> int:
            async with ShardClient(market, "t", tls=client_context(cluster), retry_for=30) as c:
                with trio.fail_after(60):
                    return (await c.submit(order(1))).seq

        assert trio.run(submit) >= 2
        # a status is a snapshot: on a loaded machine a replica may miss its 1 s connect
        # timeout, or a deposed leader not know it yet; ask until the group looks settled
        for _ in range(20):
            status = CliRunner().invoke(app, ["admin", "status", "--config", str(config), "--json"])
            assert status.exit_code == 0, status.output
            replicas = orjson.loads(status.stdout)[market.name]["replicas"]
            roles = [r["role"] for r in replicas]
            if all(r["reachable"] for r in replicas) and roles.count("leader") == 1:
                break
            time.sleep(0.5)
        assert all(r["reachable"] for r in replicas), replicas
        assert roles.count("leader") == 1, replicas
        plain = attrs.evolve(cluster, tls=None)  # the same replicas without a certificate

        async def intrude() -> None:
            async with ShardClient(plain.markets[0], "x", tls=None, retry_for=0.5) as c:
                with pytest.raises(Unavailable):
                    await c.submit(order(2))

        trio.run(intrude)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        for log in logs:
            log.close()


@pytest.mark.processes
def test_client_commands_reach_a_wss_gateway_process_with_the_ca_file(tmp_path: Path) -> None:
    import subprocess

    from cli.processes import clob_command

    cluster, certs = tls_topology(tmp_path, gateway=True)
    api_key = KeyStore(cluster.keys_file).create("dave").api_key
    listen = cluster.gateways[0].listen
    argv = [*clob_command(), "gateway", "--config", str(tmp_path / "tls.toml"), "--local-engine"]
    with (tmp_path / "gw.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert trio.run(wait_listening, listen, 60.0, probe_context())
            url, ca = f"wss://{listen}/", str(certs / "ca.crt")
            runner = CliRunner()
            args = ["order", "BTC-USD", "sell", "1", "100.00", "--url", url, "--ca-file", ca]
            placed = runner.invoke(app, args, env={"CLOB_API_KEY": api_key})
            assert placed.exit_code == 0, placed.output
            assert orjson.loads(placed.stdout)["events"][0]["type"] == "accepted"
            untrusted = runner.invoke(app, ["markets", "--url", url])
            assert untrusted.exit_code == 2 and "certificate verify failed" in untrusted.output
        finally:
            process.terminate()
            process.wait(10)


def test_certificate_names_must_not_clash(tmp_path: Path) -> None:
    _, cluster = write_topology(tmp_path)
    name = cluster.markets[0].replicas[0].name
    clash = attrs.evolve(cluster, gateways=(GatewayConfig(name, "127.0.0.1:8700"),))
    with pytest.raises(CertificateError, match=f"two certificates would be named '{name}'"):
        create_certificates(clash, tmp_path / "a")
    reserved = attrs.evolve(cluster, gateways=(GatewayConfig("client", "127.0.0.1:8700"),))
    with pytest.raises(CertificateError, match="may not be named 'client'"):
        create_certificates(reserved, tmp_path / "b")
    with pytest.raises(CertificateError, match="not in the topology: nope"):
        create_certificates(cluster, tmp_path / "c", only=["nope"])
    with pytest.raises(CertificateError, match="--only needs the CA"):
        create_certificates(cluster, tmp_path / "d", only=[name])
    assert not any((tmp_path / d).exists() for d in "abcd")  # nothing written


async def test_a_connection_lost_during_the_handshake_is_not_a_tls_failure(tmp_path: Path) -> None:
    # What a fault proxy whose upstream is down does (and a peer that restarts mid-handshake):
    # accept, then close at once. The dialer must see a lost connection, which its callers
    # treat as any other, and not a certificate problem, which they log as an error.
    cluster, _ = tls_topology(tmp_path)
    context = client_context(cluster)
    assert context is not None

    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, hang_up, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        with pytest.raises(OSError) as lost:
            await open_client_stream(tcp, context, "127.0.0.1")
        assert not isinstance(lost.value, HandshakeFailed)
        assert "connection lost" in str(lost.value)
        nursery.cancel_scope.cancel()


def test_a_ws_url_that_times_out_is_told_to_try_wss() -> None:
    # a wss:// gateway never answers a plain ws:// opening: the client times out
    # (trio-websocket's ConnectionTimeout); the message says what to try
    plain = unreachable("ws://127.0.0.1:8700/", ConnectionTimeout())
    assert "use a wss:// URL" in plain and "ws://127.0.0.1:8700/" in plain
    # no such hint for a wss:// URL, nor for a refused connection
    assert "use a wss://" not in unreachable("wss://127.0.0.1:8700/", ConnectionTimeout())
    refused = unreachable("ws://127.0.0.1:1/", ConnectionRefusedError(111, "refused"))
    assert "use a wss://" not in refused and "refused" in refused
