"""When to look at each certificate again: one work queue and one heap of
due times for the whole operator, so the number of tasks does not grow with
the number of certificates."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    """Keys waiting to be reconciled. A key is queued at most once, and is
    never handed to two workers at the same time: a key added while it is
    being processed is queued again when its worker is done."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()

    def add(self, key: Key) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.put_nowait(key)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.put_nowait(key)

    def __len__(self) -> int:
        return len(self._dirty)

    @property
    def busy(self) -> int:
        return len(self._processing)


class Scheduler(Generic[Key]):
    """A heap of (due time, key). Scheduling a key again replaces its due
    time; one task sleeps until the earliest one and queues what is due."""

    def __init__(self, queue: WorkQueue[Key], clock: Callable[[], float] = time.time) -> None:
        self._queue = queue
        self._clock = clock
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._sequence = 0
        self._wake = asyncio.Event()

    def schedule(self, key: Key, at: float) -> None:
        if self._due.get(key) == at:
            return
        self._due[key] = at
        self._sequence += 1
        heapq.heappush(self._heap, (at, self._sequence, key))
        self._compact()
        self._wake.set()

    def cancel(self, key: Key) -> None:
        self._due.pop(key, None)
        self._compact()

    def _compact(self) -> None:
        """Drop replaced and cancelled entries once they outnumber the live
        ones, so the heap stays the size of the certificates."""
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [entry for entry in self._heap if self._due.get(entry[2]) == entry[0]]
            heapq.heapify(self._heap)

    def due_at(self, key: Key) -> float | None:
        return self._due.get(key)

    def __len__(self) -> int:
        return len(self._due)

    async def run(self) -> None:
        while True:
            self._release_due()
            delay = self._next_delay()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _release_due(self) -> None:
        now = self._clock()
        while self._heap:
            at, _, key = self._heap[0]
            if self._due.get(key) != at:
                heapq.heappop(self._heap)  # replaced or cancelled
            elif at <= now:
                heapq.heappop(self._heap)
                del self._due[key]
                self._queue.add(key)
            else:
                return

    def _next_delay(self) -> float | None:
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        if not self._heap:
            return None
        # Sleep at most a minute so that a changed wall clock is noticed.
        return min(max(self._heap[0][0] - self._clock(), 0.0), 60.0)


class TokenBucket:
    """Spaces out re-issuances (e.g. after a CA swap) so that thousands of
    Secrets are not rewritten in the same second. `reserve` never blocks:
    it says how long the caller must wait for its turn."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._updated = clock()

    def reserve(self) -> float:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate
