"""Client-facing error codes (PROTOCOL.md "Errors") and how internal failures map to them."""

from __future__ import annotations

from typing import Any, Literal

from shard.node.api import CommandTimeout, SubscriptionGone, Unavailable

ErrorCode = Literal[
    "bad_request",
    "unauthenticated",
    "forbidden",
    "unknown_market",
    "unavailable",
    "timeout",
    "rate_limited",
    "too_large",
    "internal",
]

RETRYABLE: frozenset[str] = frozenset({"unavailable", "timeout", "rate_limited"})


class GatewayError(Exception):
    """A request failure to be sent to the client as ``{"ok": false, "error": ...}``."""

    def __init__(self, code: ErrorCode, message: str, *, indeterminate: bool | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.indeterminate = indeterminate

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.code in RETRYABLE,
        }
        if self.indeterminate is not None:
            body["indeterminate"] = self.indeterminate
        return body


def from_backend(exc: BaseException, *, is_command: bool) -> GatewayError:
    """Translate what a backend raised; anything unexpected is ``internal``."""
    if isinstance(exc, Unavailable):
        return GatewayError("unavailable", f"The market's replica group is unavailable: {exc}")
    if isinstance(exc, CommandTimeout):
        return GatewayError(
            "timeout",
            f"No definite answer from the market's replica group: {exc}",
            indeterminate=exc.indeterminate and is_command,
        )
    if isinstance(exc, SubscriptionGone):
        return GatewayError("unavailable", "The market's event stream was lost.")
    return GatewayError("internal", "Internal error.")


def timed_out(*, is_command: bool) -> GatewayError:
    """The gateway's own bound on a backend call expired."""
    return GatewayError(
        "timeout",
        "No definite answer in time."
        + (" The command may or may not have been applied." if is_command else ""),
        indeterminate=is_command,
    )
