"""Who may talk to a replica: a cluster secret proven on every new connection.

Without it, anyone who can reach a replica's ports could submit commands as
any user (the gateway is where users authenticate), run admin actions such as
``remove_replica``, or inject Raft messages. With ``secret_file`` in the
topology, each connection's first frame carries a proof of the secret: an
HMAC-SHA256 over a purpose label, the connection's identifying fields, a
timestamp and a random nonce. The receiver checks the MAC, refuses a
timestamp outside its window (clocks are assumed to agree to within it, as
with NTP) and refuses a nonce it has seen within the window, so a recorded
opening cannot be replayed. It authenticates the connecting side only and
encrypts nothing: on an untrusted network, run the links inside a VPN or
TLS tunnel.

Sans-I/O: callers pass the time and the nonce.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final

from config.secret import MIN_SECRET_BYTES

CLIENT: Final = b"clob-client"  # the shard client protocol's purpose label
PEER: Final = b"clob-peer"  # the Raft peer links'
WINDOW_MS: Final = 60_000
NONCE_BYTES: Final = 16
# Nonces remembered for replay detection; past this the oldest are forgotten first
# (an attacker who could make this many openings in one window could also just wait).
MAX_REMEMBERED: Final = 100_000


class Authenticator:
    """Makes and checks the proof of the cluster secret for one process."""

    def __init__(self, secret: bytes, *, window_ms: int = WINDOW_MS) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a cluster secret needs at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret
        self._window_ms = window_ms
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # nonce -> its timestamp

    def _mac(self, purpose: bytes, fields: Sequence[str], ts: int, nonce: bytes) -> bytes:
        message = b"\x00".join([purpose, *(f.encode() for f in fields), str(ts).encode(), nonce])
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def proof(
        self, purpose: bytes, fields: Sequence[str], now_ms: int, nonce: bytes
    ) -> dict[str, Any]:
        """The ``ts``, ``nonce`` and ``mac`` to send with an opening frame."""
        return {"ts": now_ms, "nonce": nonce, "mac": self._mac(purpose, fields, now_ms, nonce)}

    def check(self, purpose: bytes, fields: Sequence[str], frame: Any, now_ms: int) -> str | None:
        """Why ``frame`` does not prove the secret (None: it does; its nonce is then spent)."""
        if not isinstance(frame, dict):
            return "the first frame must prove the cluster secret"
        ts, nonce, mac = frame.get("ts"), frame.get("nonce"), frame.get("mac")
        if type(ts) is not int or type(nonce) is not bytes or type(mac) is not bytes:
            return "the first frame must prove the cluster secret (ts, nonce, mac)"
        if len(nonce) != NONCE_BYTES:
            return f"the nonce must be {NONCE_BYTES} bytes"
        if not hmac.compare_digest(mac, self._mac(purpose, fields, ts, nonce)):
            return "wrong cluster secret"
        if abs(now_ms - ts) > self._window_ms:
            return f"timestamp {ts} is outside {self._window_ms} ms of this clock ({now_ms})"
        self._forget_before(now_ms - 2 * self._window_ms)
        if nonce in self._seen:
            return "a replayed opening (this nonce was used already)"
        self._seen[nonce] = ts
        if len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
        return None

    def _forget_before(self, oldest_ms: int) -> None:
        seen = self._seen
        while seen:
            nonce, ts = next(iter(seen.items()))
            if ts >= oldest_ms:
                return
            del seen[nonce]


def client_opening(auth: Authenticator, replica: str, now_ms: int, nonce: bytes) -> dict[str, Any]:
    """The first frame of a shard client connection to ``replica`` (bound to that replica,
    so an opening seen on the way to one replica cannot be replayed to another)."""
    return {"t": "auth", **auth.proof(CLIENT, (replica,), now_ms, nonce)}
