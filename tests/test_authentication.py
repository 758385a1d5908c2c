"""The cluster secret: every connection to a replica must prove it (shard/node/authentication.py).

The proof itself (MAC, time window, replay), then each place that asks for
it: the shard client protocol (ClientServer and ShardClient, subscriptions
too), the Raft peer links, and the configuration that names the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from config.load import ConfigError, structure_config
from config.ports import free_ports
from config.render import render_toml
from config.schema import ClusterConfig, MarketConfig, ReplicaConfig
from config.secret import SecretError, create_secret, read_secret
from shard.node import protocol
from shard.node.api import Unavailable
from shard.node.authentication import CLIENT, PEER, Authenticator
from shard.node.client import ShardClient
from shard.node.clientserver import ClientServer
from shard.node.framing import FrameDecoder, encode_frame
from shard.node.transport import PeerTransport
from tests.test_node_client import FakeReplica, Group
from tests.test_transport import Inbox, wait_for

SECRET = b"0123456789abcdef0123456789abcdef"
NONCE = b"n" * 16


def test_a_proof_passes_once_and_only_with_the_secret_fields_and_time() -> None:
    auth = Authenticator(SECRET)
    proof = auth.proof(CLIENT, ("r1",), 1_000_000, NONCE)
    assert auth.check(CLIENT, ("r1",), proof, 1_000_000 + 59_000) is None
    assert "replayed" in (auth.check(CLIENT, ("r1",), proof, 1_000_100) or "")
    other = Authenticator(b"another secret of 32 bytes......")
    fresh = other.proof(CLIENT, ("r1",), 1_000_000, b"m" * 16)
    assert auth.check(CLIENT, ("r1",), fresh, 1_000_000) == "wrong cluster secret"
    for_r2 = auth.proof(CLIENT, ("r2",), 1_000_000, b"o" * 16)
    assert auth.check(CLIENT, ("r1",), for_r2, 1_000_000) == "wrong cluster secret"
    as_peer = auth.proof(PEER, ("r1",), 1_000_000, b"p" * 16)
    assert auth.check(CLIENT, ("r1",), as_peer, 1_000_000) == "wrong cluster secret"
    stale = auth.proof(CLIENT, ("r1",), 1_000_000, b"q" * 16)
    assert "outside" in (auth.check(CLIENT, ("r1",), stale, 1_000_000 + 61_000) or "")
    for junk in (None, {}, {"ts": "1", "nonce": NONCE, "mac": b"x"}, [1, 2]):
        assert "must prove" in (auth.check(CLIENT, ("r1",), junk, 1_000_000) or "")
    short = {**auth.proof(CLIENT, ("r1",), 1_000_000, NONCE), "nonce": b"n"}
    assert "16 bytes" in (auth.check(CLIENT, ("r1",), short, 1_000_000) or "")
    with pytest.raises(ValueError, match="at least 16"):
        Authenticator(b"short")


def test_spent_nonces_are_forgotten_only_once_their_time_is_out_of_the_window() -> None:
    auth = Authenticator(SECRET, window_ms=1_000)
    first = auth.proof(CLIENT, ("r1",), 10_000, NONCE)
    assert auth.check(CLIENT, ("r1",), first, 10_000) is None
    later = auth.proof(CLIENT, ("r1",), 12_500, b"z" * 16)
    assert auth.check(CLIENT, ("r1",), later, 12_500) is None  # forgets the first nonce
    again = auth.proof(CLIENT, ("r1",), 12_500, NONCE)  # the same nonce, a new time: fine
    assert auth.check(CLIENT, ("r1",), again, 12_600) is None
    assert "outside" in (auth.check(CLIENT, ("r1",), first, 12_600) or "")


def _market(address: str) -> MarketConfig:
    return MarketConfig("M", "1", "1", (ReplicaConfig("r1", "127.0.0.1:1", address, "d/r1"),))


async def _read_until_closed(stream: trio.SocketStream) -> list[Any]:
    decoder = FrameDecoder()
    with trio.fail_after(5):
        while data := await stream.receive_some(4096):
            decoder.feed(data)
    return list(decoder.messages())


async def test_a_replica_with_a_secret_serves_only_clients_that_prove_it() -> None:
    group = Group()
    fake = FakeReplica("r1", group)
    server = ClientServer(
        fake, f"127.0.0.1:{free_ports(1)[0]}", node="r1", auth=Authenticator(SECRET)
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        market = _market(server.listen)
        async with ShardClient(market, "good", secret=SECRET) as client:
            assert (await client.submit({"n": 1})).seq == 1
            async with client.subscribe(from_seq=1) as items:
                with trio.fail_after(10):
                    assert (await items.__anext__()).seq == 1
        # no proof: told why, then the connection ends; nothing was applied
        async with await trio.open_tcp_stream("127.0.0.1", server.port) as stream:
            await stream.send_all(encode_frame({"t": "status", "rid": 1}))
            [refusal] = await _read_until_closed(stream)
        assert refusal["code"] == protocol.UNAUTHORIZED and "prove" in refusal["message"]
        for secret in (None, b"the wrong secret, 32 bytes long."):
            async with ShardClient(market, "bad", secret=secret, retry_for=0.5) as intruder:
                with pytest.raises(Unavailable, match="refused this client"):
                    await intruder.submit({"n": 2})
        assert group.applications == 1 and server.refused >= 3
        nursery.cancel_scope.cancel()


def _peers(secret_a: bytes | None, secret_b: bytes | None) -> tuple[PeerTransport, PeerTransport]:
    port_a, port_b = free_ports(2)
    peers = {"a": f"127.0.0.1:{port_a}", "b": f"127.0.0.1:{port_b}"}
    auth_a = Authenticator(secret_a) if secret_a else None
    auth_b = Authenticator(secret_b) if secret_b else None
    a = PeerTransport("c1", "a", peers["a"], peers, deliver=Inbox(), auth=auth_a)
    return a, PeerTransport("c1", "b", peers["b"], peers, deliver=Inbox(), auth=auth_b)


async def test_peers_link_only_when_both_hold_the_same_secret() -> None:
    a, b = _peers(SECRET, SECRET)
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: a.connected("b") and b.connected("a"))
        nursery.cancel_scope.cancel()
    a, b = _peers(SECRET, b"the wrong secret, 32 bytes long.")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: "wrong cluster secret" in (b.statistics()["a"].last_error or ""))
        await wait_for(lambda: "wrong cluster secret" in (a.statistics()["b"].last_error or ""))
        assert not a.connected("b") and not b.connected("a")
        nursery.cancel_scope.cancel()
    a, b = _peers(SECRET, None)  # b proves nothing
    async with trio.open_nursery() as nursery:
        await nursery.start(a.serve)
        await nursery.start(b.serve)
        await wait_for(lambda: "must prove" in (b.statistics()["a"].last_error or ""))
        assert not b.connected("a")
        nursery.cancel_scope.cancel()


def _cluster(secret_file: str | None) -> ClusterConfig:
    replica = ReplicaConfig("r1", "127.0.0.1:7001", "127.0.0.1:7002", "d/r1")
    return ClusterConfig("c", (MarketConfig("M", "1", "1", (replica,)),), secret_file=secret_file)


def test_the_topology_names_the_secret_file_and_bad_files_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "cluster.secret"
    cluster = _cluster(str(path))
    assert 'secret_file = "' in render_toml(cluster)
    assert "secret_file" not in render_toml(_cluster(None))
    with pytest.raises(SecretError, match=r"cannot read.*create-secret"):
        read_secret(cluster)
    assert create_secret(path) and not create_secret(path)  # never overwritten
    assert path.stat().st_mode & 0o777 == 0o600
    secret = read_secret(cluster)
    assert secret is not None and len(secret) == 64
    path.write_text("short\n")
    with pytest.raises(SecretError, match="5 bytes; at least 16"):
        read_secret(cluster)
    assert read_secret(_cluster(None)) is None
    data: dict[str, Any] = {
        "cluster_id": "c",
        "secret_file": "",
        "markets": [
            {
                "name": "M",
                "tick_size": "1",
                "lot_size": "1",
                "replicas": [{"name": "r1", "raft": "h:1", "client": "h:2", "data_dir": "d"}],
            }
        ],
    }
    with pytest.raises(ConfigError, match="secret_file: must not be empty"):
        structure_config(data, "t.toml")
