"""The one clock of the runtime. Every component that needs the time is
given this object, so that tests pass a fake one instead of patching modules."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime.datetime:
        """The wall-clock time, in UTC: what certificates and statuses say."""

    def time(self) -> float:
        """The wall-clock time as a Unix timestamp: when work is due."""

    def monotonic(self) -> float:
        """Seconds that never go back: for durations and deadlines."""

    async def sleep(self, seconds: float) -> None:
        """Wait that long: a back-off, or a period between polls."""


class SystemClock:
    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
