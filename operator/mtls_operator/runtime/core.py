"""The runtime every controller shares: the API client, the cache of the
cluster, the clock, the work queue and scheduler, the worker pool, the
crypto threads and the metrics.
Controllers register here; the runtime starts them, then hands each key
that is due to the controller it belongs to."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Protocol, TypeVar

from mtls_operator.runtime.cache import SharedCache
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.events import EventRecorder
from mtls_operator.runtime.fairness import FairThreads, Flow
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.runtime.reflector import Reflector
from mtls_operator.runtime.scheduler import ONE_FLOW, Lane, Scheduler, WorkQueue

logger = logging.getLogger(__name__)

T = TypeVar("T")
WorkKey = tuple[str, Any]  # (controller name, the controller's own key)

# The flow of the key a worker is reconciling: the crypto threads serve the
# work it asks for in that flow's turn.
_serving: contextvars.ContextVar[Flow] = contextvars.ContextVar("serving", default=ONE_FLOW)


class Controller(Protocol):
    name: str

    async def start(self) -> None:
        """Load what must be known before the first reconciliation (and
        start the watches that keep it current)."""

    async def reconcile(self, key: Any) -> None:
        """Look at one object; never raises for that object's own problems."""


class Runtime:
    def __init__(
        self,
        kube: Kube,
        clock: Clock,
        metrics: Metrics,
        *,
        workers: int = 32,
        crypto_threads: int = 4,
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.metrics = metrics
        self.events = EventRecorder(kube, clock)
        self._lanes: dict[str, Lane[Hashable]] = {}
        self.queue: WorkQueue[WorkKey] = WorkQueue(self._flow)
        self.scheduler: Scheduler[WorkKey] = Scheduler(self.queue, clock)
        # Key generation and signing run here, never on the event loop.
        self._crypto = FairThreads(crypto_threads, thread_name_prefix="mtls-crypto")
        self.executor = self._crypto.executor
        self._workers = workers
        self._controllers: dict[str, Controller] = {}
        self._started: set[str] = set()
        self._tasks: list[asyncio.Task[Any]] = []
        # Watches stopped on purpose, until their tasks are done.
        self._stopping: set[asyncio.Task[Any]] = set()
        self._reflectors: list[Reflector] = []
        self._working = False
        self.cache = SharedCache(kube, self.watch, clock)

    async def compute(self, work: Callable[[], T], *, quick: bool) -> T:
        """CPU-bound work (keys, signatures, keystores): on the event loop
        when `quick`, since handing about 0.1 ms of ECDSA work to a thread
        costs as much again and contends for the GIL; in a crypto thread
        otherwise, so that RSA never stalls every other reconciliation, in
        the turn of the key being reconciled."""
        if quick:
            return work()
        return await self._crypto.run(_serving.get(), work)

    def lane(
        self, name: str, *, tenant_of: Callable[[Any], Hashable] | None = None, urgent: bool = False
    ) -> Lane[Hashable]:
        """The controller `name`'s keys; `tenant_of(key)` says whose turn
        each is taken in (see `runtime.fairness`), `urgent` that they go
        before the others. Asked for again by name: the lane made first."""
        lane = self._lanes.get(name)
        if lane is None:
            lane = Lane(name, self.scheduler, self.queue, tenant_of=tenant_of, urgent=urgent)
            self._lanes[name] = lane
        return lane

    def add(self, controller: Controller) -> None:
        """Controllers start in the order they are added."""
        self._controllers[controller.name] = controller

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task that runs as long as the runtime does; its end is a failure."""
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.append(task)
        return task

    def watch(self, reflector: Reflector, name: str) -> Callable[[], None]:
        """Run `reflector` as long as the runtime runs, or until what this
        returns is called; /readyz reports what stops it. A watch stopped on
        purpose is no failure, and /readyz forgets it."""
        self._reflectors.append(reflector)
        task = self.spawn(reflector.run(), name)

        def stop() -> None:
            if task in self._tasks:
                self._tasks.remove(task)
                self._reflectors.remove(reflector)
                task.cancel()
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

        return stop

    async def start(self) -> None:
        """Start every controller, then the scheduler and the workers.

        Safe to call again after a failure (kopf retries start-up handlers):
        what was started is kept, not started twice."""
        self.cache.start()
        for name, controller in self._controllers.items():
            if name not in self._started:
                await controller.start()
                self._started.add(name)
        if not self._working:
            self._working = True
            self.spawn(self.scheduler.run(), "scheduler")
            for index in range(self._workers):
                self.spawn(self._work(), f"worker-{index}")

    def healthy(self) -> bool:
        """No task of a started runtime has died (a standby has none yet)."""
        return all(not t.done() for t in self._tasks)

    def problems(self) -> list[str]:
        """Why the runtime cannot do its work now, one line each: still
        loading, or a watch that waits for someone to act."""
        found = [r.problem for r in self._reflectors if r.problem is not None]
        if not self._working:
            found.append("starting: loading what must be known before the first reconciliation")
        return found

    def halt(self) -> None:
        """Cancel every task now; `stop` waits for them."""
        for task in self._tasks:
            task.cancel()

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._stopping]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _flow(self, key: WorkKey) -> Flow:
        name, own_key = key
        lane = self._lanes.get(name)
        return lane.flow(own_key) if lane is not None else ONE_FLOW

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            name, own_key = key
            _serving.set(self._flow(key))
            try:
                await self._controllers[name].reconcile(own_key)
            except Exception:  # a controller's bug must not end a worker
                logger.exception("reconciling %s %s failed", name, own_key)
            finally:
                self.queue.done(key)
