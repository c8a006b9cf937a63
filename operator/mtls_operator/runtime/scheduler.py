"""When to look at each object again: one work queue and one heap of due
times for the whole operator, so the number of tasks does not grow with the
number of objects."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from mtls_operator.runtime import backoff
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.fairness import FairOrder, Flow

K = TypeVar("K", bound=Hashable)

ONE_FLOW = Flow("operator")


def namespace_of(key: Any) -> str:
    """The tenant of a namespaced object's key (namespace, name)."""
    return str(key[0])


class WorkQueue(Generic[K]):
    """Keys waiting to be reconciled. A key is queued at most once, and is
    never handed to two workers at the same time: a key added while it is
    being processed is queued again when its worker is done. Keys are handed
    out in turns by `flow_of(key)` (see `runtime.fairness`)."""

    def __init__(self, flow_of: Callable[[K], Flow] = lambda _: ONE_FLOW) -> None:
        self._flow_of = flow_of
        self._waiting: FairOrder[K] = FairOrder()
        # One token per key in `_waiting`: a worker takes a token, then a key.
        self._tokens = asyncio.Semaphore(0)
        self._dirty: set[K] = set()
        self._processing: set[K] = set()

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._put(key)

    async def get(self) -> K:
        await self._tokens.acquire()
        key = self._waiting.pop()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._put(key)

    def __len__(self) -> int:
        return len(self._dirty)

    def _put(self, key: K) -> None:
        self._waiting.push(self._flow_of(key), key)
        self._tokens.release()


class Scheduler(Generic[K]):
    """A heap of (due time, key). Scheduling a key again replaces its due
    time; one task sleeps until the earliest one and queues what is due."""

    def __init__(self, queue: WorkQueue[K], clock: Clock) -> None:
        self._queue = queue
        self._clock = self.clock = clock
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._sequence = 0
        self._wake = asyncio.Event()

    def schedule(self, key: K, at: float) -> None:
        if self._due.get(key) == at:
            return
        self._due[key] = at
        self._sequence += 1
        heapq.heappush(self._heap, (at, self._sequence, key))
        self._compact()
        self._wake.set()

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)
        self._compact()

    def _compact(self) -> None:
        """Drop replaced and cancelled entries once they outnumber the live
        ones, so the heap stays the size of the certificates."""
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [entry for entry in self._heap if self._due.get(entry[2]) == entry[0]]
            heapq.heapify(self._heap)

    def due_at(self, key: K) -> float | None:
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
        now = self._clock.time()
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
        return min(max(self._heap[0][0] - self._clock.time(), 0.0), 60.0)


class Lane(Generic[K]):
    """One controller's view of the shared queue and scheduler: its own keys,
    tagged with its name so that the controllers' keys never collide, and
    the flow each key is served in (by `tenant_of(key)`, or the lane's own
    when its keys belong to no tenant)."""

    def __init__(
        self,
        name: str,
        scheduler: Scheduler[tuple[str, K]],
        queue: WorkQueue[tuple[str, K]],
        *,
        tenant_of: Callable[[K], Hashable] | None = None,
        urgent: bool = False,
    ) -> None:
        self.name = name
        self._scheduler = scheduler
        self._queue = queue
        self._tenant_of = tenant_of
        self._urgent = urgent
        # Failures in a row of each key that is waiting to be tried again.
        self._failures: dict[K, int] = {}

    def flow(self, key: K) -> Flow:
        tenant = self._tenant_of(key) if self._tenant_of is not None else self.name
        return Flow(tenant, self._urgent)

    def add(self, key: K) -> None:
        """Look at `key` as soon as a worker is free (and its turn has come)."""
        self._queue.add((self.name, key))

    def schedule(self, key: K, at: float) -> None:
        """Look at `key` at Unix time `at` (replacing any earlier plan)."""
        self._scheduler.schedule((self.name, key), at)

    def cancel(self, key: K) -> None:
        self._scheduler.cancel((self.name, key))

    def retry(self, key: K, table: tuple[float, ...] = backoff.RECONCILE) -> int:
        """Look at `key` again after a wait that grows with its failures in a
        row (`table`); returns how many there were before this one."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.schedule(key, self._scheduler.clock.time() + backoff.delay(table, failures))
        return failures

    def forget(self, key: K) -> None:
        """`key` is done with, or went well: no plan, no failures counted."""
        self._failures.pop(key, None)
        self.cancel(key)

    def succeeded(self, key: K) -> None:
        """`key` went well: its next failure waits the shortest time again."""
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        """How many times in a row `key` failed."""
        return self._failures.get(key, 0)

    def due_at(self, key: K) -> float | None:
        return self._scheduler.due_at((self.name, key))
