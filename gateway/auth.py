"""API keys: created and revoked by ``clob admin keys``, checked by the gateway.

A key is ``<key_id>.<secret>``: the key id (public, used to find the record
and to revoke) and 32 random bytes of secret. The keys file (JSON) stores
only a salted SHA-256 of the secret: the secret has 256 bits of entropy, so a
fast hash is enough (there is nothing to brute-force). The file is replaced
atomically on every change, and the gateway rereads it when its mtime
changes, so a revocation applies to every later ``auth``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Any

import attrs
import orjson

MAX_USER_LENGTH = 64  # ENGINE.md: a user is a non-empty string of at most 64 characters


@attrs.frozen
class KeyRecord:
    key_id: str
    user: str
    salt: str  # hex
    digest: str  # hex sha256(salt + secret)
    created: str  # ISO 8601


@attrs.frozen
class NewKey:
    key_id: str
    user: str
    api_key: str  # shown once, never stored


def _digest(salt: bytes, secret: str) -> str:
    return hashlib.sha256(salt + secret.encode()).hexdigest()


def _valid_user(user: str) -> bool:
    return 0 < len(user) <= MAX_USER_LENGTH and user.isprintable() and user.strip() == user


class KeyStore:
    """The keys file at ``path`` (missing file = no keys)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._records: dict[str, KeyRecord] = {}
        self._stamp: tuple[int, int] | None = None

    def records(self) -> list[KeyRecord]:
        """Every key, freshly read from the file."""
        self._refresh()
        return list(self._records.values())

    def verify(self, api_key: str) -> str | None:
        """The user an API key belongs to, or None when it is unknown or revoked."""
        record = self.check(api_key)
        return record.user if record is not None else None

    def check(self, api_key: str) -> KeyRecord | None:
        """The record of a valid API key, or None when it is unknown or revoked."""
        key_id, dot, secret = api_key.partition(".")
        if not dot or not key_id or not secret:
            return None
        self._refresh()
        record = self._records.get(key_id)
        if record is None:
            return None
        expected = _digest(bytes.fromhex(record.salt), secret)
        return record if hmac.compare_digest(expected, record.digest) else None

    def key_ids(self) -> set[str]:
        """The ids of every key in the file now."""
        self._refresh()
        return set(self._records)

    def create(self, user: str) -> NewKey:
        """Add a key for ``user``; the plain key is returned once and stored only hashed."""
        if not _valid_user(user):
            raise ValueError(f"a user is 1 to {MAX_USER_LENGTH} printable characters")
        self._refresh()
        key_id = secrets.token_hex(6)
        while key_id in self._records:
            key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        record = KeyRecord(key_id, user, salt.hex(), _digest(salt, secret), created)
        self._write([*self._records.values(), record])
        return NewKey(key_id, user, f"{key_id}.{secret}")

    def revoke(self, key_id_or_user: str) -> list[KeyRecord]:
        """Remove the key with that id, or else every key of that user; returns what was removed."""
        self._refresh()
        gone = [r for r in self._records.values() if r.key_id == key_id_or_user]
        if not gone:
            gone = [r for r in self._records.values() if r.user == key_id_or_user]
        if gone:
            self._write([r for r in self._records.values() if r not in gone])
        return gone

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        doc = orjson.loads(self.path.read_bytes())
        rows: list[dict[str, Any]] = doc.get("keys", []) if isinstance(doc, dict) else []
        self._records = {row["key_id"]: KeyRecord(**row) for row in rows}
        self._stamp = stamp

    def _write(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"keys": [attrs.asdict(r) for r in records]}
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._stamp = None
        self._refresh()
