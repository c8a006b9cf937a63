"""The shared work queue serves namespaces in turns and pod requests first:
one tenant with thousands of keys due cannot delay another tenant's one key
by more than one key per namespace with work waiting, and a pod's request
is never left to wait out its fifteen minutes behind certificates. Keys
are still handed out once, and never to two workers at a time."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

from mtls_operator.runtime.fairness import URGENT_STREAK, FairThreads, Flow
from mtls_operator.runtime.scheduler import Lane, Scheduler, WorkQueue, namespace_of

from support.clock import FakeClock
from support.loop import run, settle

Key = tuple[str, Any]
NOW = 1_000_000.0
# The API server deletes a PodCertificateRequest this long after it was made.
REQUEST_LIFETIME = 15 * 60.0
# The longest one reconciliation takes on two cores: an RSA-4096 key.
SLOWEST_ITEM = 2.0


class Lanes:
    """The runtime's arrangement: the certificates' lane in turns by
    namespace, the pod requests' urgent, the trust bundles' one flow."""

    def __init__(self, clock: FakeClock) -> None:
        self.queue: WorkQueue[Key] = WorkQueue(self.flow)
        self.scheduler: Scheduler[Key] = Scheduler(self.queue, clock)
        self.certificates: Lane[Hashable] = Lane(
            "certificates", self.scheduler, self.queue, tenant_of=namespace_of
        )
        self.pods: Lane[Hashable] = Lane(
            "pods", self.scheduler, self.queue, tenant_of=namespace_of, urgent=True
        )
        self.bundles: Lane[Hashable] = Lane("bundles", self.scheduler, self.queue)

    def flow(self, key: Key) -> Flow:
        lane = {"certificates": self.certificates, "pods": self.pods}.get(key[0], self.bundles)
        return lane.flow(key[1])

    async def take(self, count: int) -> list[Key]:
        taken = []
        for _ in range(count):
            key = await asyncio.wait_for(self.queue.get(), timeout=1)
            self.queue.done(key)
            taken.append(key)
        return taken


@contextlib.asynccontextmanager
async def scheduling(clock: FakeClock) -> AsyncIterator[Lanes]:
    lanes = Lanes(clock)
    task = asyncio.create_task(lanes.scheduler.run())
    try:
        yield lanes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_thousands_of_keys_due_in_one_namespace_delay_another_by_one() -> None:
    async def scenario() -> list[Key]:
        clock = FakeClock.at(NOW)
        async with scheduling(clock) as lanes:
            # A tenant's renewals all fall due in the same second...
            for index in range(5000):
                lanes.certificates.schedule(("busy", f"cert-{index}"), NOW + 10)
            # ...and, a moment later, another tenant's one.
            lanes.certificates.schedule(("quiet", "web"), NOW + 10.5)
            clock.set_time(NOW + 11)
            await settle()
            assert len(lanes.queue) == 5001
            return await lanes.take(3)

    taken = run(scenario)
    assert ("certificates", ("quiet", "web")) in taken[:3]
    assert taken[0] == ("certificates", ("busy", "cert-0"))


def test_a_key_waits_at_most_one_key_per_namespace_with_work() -> None:
    async def scenario() -> list[Key]:
        lanes = Lanes(FakeClock.at(NOW))
        for tenant in ("a", "b", "c"):
            for index in range(1000):
                lanes.certificates.add((tenant, f"cert-{index}"))
        lanes.certificates.add(("d", "only"))
        return await lanes.take(4)

    taken = run(scenario)
    assert [key[1][0] for key in taken] == ["a", "b", "c", "d"]


def test_a_busy_namespace_is_served_as_fast_as_the_others_allow() -> None:
    async def scenario() -> list[str]:
        lanes = Lanes(FakeClock.at(NOW))
        for index in range(100):
            lanes.certificates.add(("busy", f"cert-{index}"))
        lanes.certificates.add(("quiet", "a"))
        lanes.certificates.add(("quiet", "b"))
        return [key[1][0] for key in await lanes.take(102)]

    order = run(scenario)
    # Turns while both wait, then the busy one alone: nobody idles.
    assert order[:4] == ["busy", "quiet", "busy", "quiet"]
    assert order[4:] == ["busy"] * 98


def test_a_pod_request_goes_before_every_waiting_certificate() -> None:
    async def scenario() -> list[Key]:
        lanes = Lanes(FakeClock.at(NOW))
        for index in range(1000):
            lanes.certificates.add(("busy", f"cert-{index}"))
        lanes.pods.add(("quiet", "req-1"))
        return await lanes.take(2)

    assert run(scenario)[0] == ("pods", ("quiet", "req-1"))


def test_pod_requests_are_signed_long_before_they_are_deleted() -> None:
    """Requests come every few seconds while a tenant keeps 10,000
    certificates due, each taking the longest a reconciliation takes (one
    worker, a clock moved by the items served): every request is served
    within one item of being posted, far inside its fifteen minutes (first
    come, first served, it would wait 10,000 items: over five hours)."""

    async def scenario() -> list[float]:
        clock = FakeClock.at(NOW)
        lanes = Lanes(clock)
        for index in range(10_000):
            lanes.certificates.add(("busy", f"cert-{index}"))
        posted: dict[Hashable, float] = {}
        waited: list[float] = []
        next_request = NOW
        while len(waited) < 200:
            while next_request <= clock.time():
                key = ("pods-ns", f"req-{len(posted)}")
                posted[key] = next_request
                lanes.pods.add(key)
                next_request += 5.0
            lane, own = await lanes.queue.get()
            if lane == "pods":
                waited.append(clock.time() - posted[own])
            else:
                lanes.certificates.add(own)  # renewed, and due again: the load never ends
            clock.advance(SLOWEST_ITEM)
            lanes.queue.done((lane, own))
        return waited

    waited = run(scenario)
    assert max(waited) <= SLOWEST_ITEM < REQUEST_LIFETIME


def test_pod_requests_never_shut_certificates_out() -> None:
    async def scenario() -> list[str]:
        lanes = Lanes(FakeClock.at(NOW))
        for index in range(100):
            lanes.pods.add(("node-flood", f"req-{index}"))
            lanes.certificates.add(("team", f"cert-{index}"))
        return [key[0] for key in await lanes.take(3 * (URGENT_STREAK + 1))]

    lanes_taken = run(scenario)
    for turn in range(3):
        streak = lanes_taken[turn * (URGENT_STREAK + 1) : (turn + 1) * (URGENT_STREAK + 1)]
        assert streak == ["pods"] * URGENT_STREAK + ["certificates"]


def test_pod_requests_of_one_namespace_do_not_hold_up_another_namespace() -> None:
    async def scenario() -> list[Key]:
        lanes = Lanes(FakeClock.at(NOW))
        for index in range(500):
            lanes.pods.add(("flood", f"req-{index}"))
        lanes.pods.add(("app", "req"))
        return await lanes.take(2)

    assert ("pods", ("app", "req")) in run(scenario)


def test_a_key_is_queued_once_whatever_its_flow_and_however_often_it_is_added() -> None:
    async def scenario() -> None:
        lanes = Lanes(FakeClock.at(NOW))
        for _ in range(3):
            lanes.certificates.add(("a", "web"))
            lanes.pods.add(("a", "web"))  # another lane's key of the same name
            lanes.certificates.add(("b", "db"))
        assert len(lanes.queue) == 3
        taken = await lanes.take(3)
        assert sorted(taken) == [
            ("certificates", ("a", "web")),
            ("certificates", ("b", "db")),
            ("pods", ("a", "web")),
        ]
        assert len(lanes.queue) == 0

    run(scenario)


def test_a_key_added_while_it_is_processed_waits_for_its_worker_then_goes_once() -> None:
    async def scenario() -> None:
        clock = FakeClock.at(NOW)
        async with scheduling(clock) as lanes:
            lanes.certificates.add(("a", "web"))
            key = await lanes.queue.get()
            # Its Secret's watch event, its due time, and an edit, all while it is processed.
            lanes.certificates.add(("a", "web"))
            lanes.certificates.schedule(("a", "web"), NOW - 1)
            lanes.certificates.add(("a", "web"))
            await settle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lanes.queue.get(), timeout=0.05)
                raise AssertionError("handed to a second worker while the first has it")
            lanes.queue.done(key)
            assert await lanes.take(1) == [key]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lanes.queue.get(), timeout=0.05)
                raise AssertionError("queued twice")

    run(scenario)


def test_a_cancelled_worker_takes_no_key_with_it() -> None:
    async def scenario() -> None:
        lanes = Lanes(FakeClock.at(NOW))
        waiting = asyncio.create_task(lanes.queue.get())
        await settle()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        lanes.certificates.add(("a", "web"))
        assert await lanes.take(1) == [("certificates", ("a", "web"))]

    run(scenario)


# --- the crypto threads ---


def test_crypto_work_of_a_busy_tenant_waits_behind_its_own() -> None:
    """One thread, a tenant with ten RSA keys asked for, then another tenant's
    one: the other's starts after the one running and at most one more
    (first come, first served, it would start last)."""

    async def scenario() -> list[str]:
        threads = FairThreads(1, thread_name_prefix="test-crypto")
        release = threading.Event()
        started: list[str] = []

        def work(name: str) -> Callable[[], str]:
            def generate() -> str:
                started.append(name)
                release.wait(timeout=5)
                return name

            return generate

        try:
            jobs = [
                asyncio.create_task(threads.run(Flow("busy"), work(f"busy-{i}"))) for i in range(10)
            ]
            await settle()
            jobs.append(asyncio.create_task(threads.run(Flow("quiet"), work("quiet"))))
            await settle()
            release.set()
            assert await asyncio.gather(*jobs) == [*(f"busy-{i}" for i in range(10)), "quiet"]
        finally:
            threads.executor.shutdown()
        return started

    started = run(scenario)
    assert started.index("quiet") <= 2


def test_crypto_work_whose_caller_gave_up_frees_its_thread() -> None:
    async def scenario() -> str:
        threads = FairThreads(1, thread_name_prefix="test-crypto")
        try:
            blocked = asyncio.create_task(threads.run(Flow("a"), lambda: "first"))
            waiting = asyncio.create_task(threads.run(Flow("a"), lambda: "never"))
            await settle()
            waiting.cancel()
            assert await blocked == "first"
            return await threads.run(Flow("b"), lambda: "next")
        finally:
            threads.executor.shutdown()

    assert run(scenario) == "next"


def test_crypto_work_keeps_its_thread_until_done_when_its_caller_stops_waiting() -> None:
    async def scenario() -> list[str]:
        threads = FairThreads(1, thread_name_prefix="test-crypto")
        release = threading.Event()
        order: list[str] = []

        def slow() -> str:
            release.wait(timeout=5)
            order.append("slow done")
            return "slow"

        def next_job() -> str:
            order.append("next started")
            return "next"

        try:
            running = asyncio.create_task(threads.run(Flow("a"), slow))
            await settle()
            running.cancel()
            waiting = asyncio.create_task(threads.run(Flow("b"), next_job))
            await asyncio.sleep(0.05)
            assert order == [], "the one thread is still busy"
            release.set()
            assert await waiting == "next"
        finally:
            threads.executor.shutdown()
        return order

    assert run(scenario) == ["slow done", "next started"]
