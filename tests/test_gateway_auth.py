"""API keys (stored hashed) and the per-connection token bucket."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.auth import KeyStore
from gateway.ratelimit import TokenBucket


def test_keys_are_stored_hashed_and_verify(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "var" / "keys.json")
    alice = store.create("alice")
    text = (tmp_path / "var" / "keys.json").read_text()
    secret = alice.api_key.split(".", 1)[1]
    assert secret not in text and alice.api_key not in text
    assert store.verify(alice.api_key) == "alice"
    assert store.verify(alice.api_key[:-1] + ("A" if alice.api_key[-1] != "A" else "B")) is None
    assert store.verify("garbage") is None and store.verify(".x") is None
    # another process (the gateway) reading the same file agrees
    assert KeyStore(tmp_path / "var" / "keys.json").verify(alice.api_key) == "alice"
    doc = orjson.loads(text)
    assert [row["user"] for row in doc["keys"]] == ["alice"]


def test_revoke_by_key_id_or_user(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    store = KeyStore(path)
    a1, a2, b = store.create("alice"), store.create("alice"), store.create("bob")
    reader = KeyStore(path)
    assert reader.verify(a1.api_key) == "alice"
    assert [r.key_id for r in store.revoke(a1.key_id)] == [a1.key_id]
    assert reader.verify(a1.api_key) is None and reader.verify(a2.api_key) == "alice"
    assert {r.key_id for r in store.revoke("alice")} == {a2.key_id}
    assert reader.verify(a2.api_key) is None and reader.verify(b.api_key) == "bob"
    assert store.revoke("nobody") == []


@pytest.mark.parametrize("user", ["", " alice", "x" * 65, "a\nb"])
def test_invalid_user_names_are_refused(tmp_path: Path, user: str) -> None:
    with pytest.raises(ValueError):
        KeyStore(tmp_path / "keys.json").create(user)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.try_take(0.05) is False  # half a token so far
    assert bucket.try_take(0.1) is True
    assert [bucket.try_take(100.0) for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]  # capped at burst
