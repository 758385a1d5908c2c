"""A bounded, human-readable record of the last simulation events."""

from __future__ import annotations

from collections import deque


class Trace:
    def __init__(self, keep: int = 300) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self.now = 0

    def log(self, text: str) -> None:
        self.lines.append(f"t={self.now:<6} {text}")

    def dump(self, last: int | None = None) -> str:
        lines = list(self.lines)
        return "\n".join(lines[-last:] if last else lines)
