"""The cluster secret named by a topology's ``secret_file``: read it, or create one.

Every process that talks to replicas (replicas, gateways, ``clob admin``,
benchmarks, chaos) reads the same file; see shard/node/authentication.py for
what it protects.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from config.schema import ClusterConfig

MIN_SECRET_BYTES = 16


class SecretError(ValueError):
    """The configured secret file cannot be used (missing, unreadable or too short)."""


def read_secret(cluster: ClusterConfig) -> bytes | None:
    """The secret (surrounding whitespace stripped), or None when none is configured."""
    if cluster.secret_file is None:
        return None
    path = Path(cluster.secret_file)
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise SecretError(
            f"secret_file {str(path)!r}: cannot read: {exc.strerror or exc}"
            " (create one with `clob admin create-secret`)"
        ) from exc
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretError(
            f"secret_file {str(path)!r}: {len(secret)} bytes; at least {MIN_SECRET_BYTES} needed"
        )
    return secret


def create_secret(path: Path) -> bool:
    """Write a new random secret to ``path`` (owner-only) unless it exists; True if written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    return True
