"""A token bucket per connection (sans-I/O: the caller passes the time)."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each request takes one.

    A request that finds the bucket empty is refused (``rate_limited``) rather
    than delayed, so a flooding client learns at once and other clients'
    requests are never queued behind its backlog.
    """

    def __init__(self, rate: float, burst: float, now: float) -> None:
        assert rate > 0 and burst >= 1
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def try_take(self, now: float, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens if there are that many; False (and nothing taken) otherwise."""
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._stamp = now
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False
