"""Time in tests: a fixed `now`, and a clock that moves only when a test moves it, or when
the code under test sleeps on it: a sleep returns at once, the clock that much later."""

from __future__ import annotations

import asyncio
import datetime

# The unit tests' "now": every certificate and CA they make is made at NOW.
NOW = datetime.datetime(2026, 11, 28, 12, 0, tzinfo=datetime.UTC)


class FakeClock:
    def __init__(self, now: datetime.datetime) -> None:
        self._now = now
        self._start = now
        # Every sleep asked for, in order: the back-offs a test checks.
        self.slept: list[float] = []

    def now(self) -> datetime.datetime:
        return self._now

    def time(self) -> float:
        return self._now.timestamp()

    def monotonic(self) -> float:
        return (self._now - self._start).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        # A sleep still lets the other tasks run, as a real one would.
        await asyncio.sleep(0)

    @classmethod
    def at(cls, seconds: float) -> FakeClock:
        """A clock reading `seconds` as its Unix time."""
        return cls(datetime.datetime.fromtimestamp(seconds, datetime.UTC))

    def set_time(self, seconds: float) -> None:
        self._now = datetime.datetime.fromtimestamp(seconds, datetime.UTC)

    def set(self, now: datetime.datetime) -> None:
        self._now = now

    def advance(self, seconds: float) -> None:
        self._now += datetime.timedelta(seconds=seconds)
