"""Spacing out re-issuances: after a CA swap or a wave of renewals, thousands
of Secrets must not be rewritten in the same second."""

from __future__ import annotations

from collections.abc import Hashable

from mtls_operator.runtime.clock import Clock


class TokenBucket:
    """`reserve` never blocks: it says how long the caller must wait for its turn."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock.monotonic()

    def reserve(self) -> float:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate


class Turns:
    """Turns granted by a token bucket, kept per object: an object that comes
    back early keeps the turn it was given instead of queueing again."""

    def __init__(self, bucket: TokenBucket, clock: Clock) -> None:
        self._bucket = bucket
        self._clock = clock
        self._granted: dict[Hashable, float] = {}

    def wait(self, key: Hashable) -> float | None:
        """None when `key` may go now (its turn is used up); else the
        wall-clock time of its turn, to come back at."""
        turn = self._granted.pop(key, None)
        if turn is None:
            wait = self._bucket.reserve()
            if wait <= 0:
                return None
            turn = self._clock.time() + wait
        if self._clock.time() >= turn:
            return None
        self._granted[key] = turn
        return turn

    def forget(self, key: Hashable) -> None:
        self._granted.pop(key, None)
