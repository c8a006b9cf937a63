"""The work queue, the due-time heap and the controllers' lanes.
pytest-asyncio is not used: each test runs its own event loop with asyncio.run."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from mtls_operator.runtime.scheduler import Lane, Scheduler, WorkQueue

from support.clock import FakeClock
from support.loop import run, settle


async def nothing_queued(queue: WorkQueue[str]) -> bool:
    try:
        key = await asyncio.wait_for(queue.get(), timeout=0.02)
    except TimeoutError:
        return True
    queue.done(key)
    return False


# --- WorkQueue ---


def test_queue_hands_out_each_key_once_in_order() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ["a", "b", "a", "c", "b"]:
            queue.add(key)
        assert len(queue) == 3
        taken = [await queue.get() for _ in range(3)]
        assert len(queue) == 0
        assert await nothing_queued(queue)
        return taken

    assert run(scenario) == ["a", "b", "c"]


def test_key_added_while_processing_is_requeued_after_done() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        assert await queue.get() == "a"
        queue.add("a")
        queue.add("a")
        assert len(queue) == 1
        # Not handed out while its worker is busy with it...
        assert await nothing_queued(queue)
        queue.done("a")
        # ...but right after, once.
        assert await queue.get() == "a"
        queue.done("a")
        assert await nothing_queued(queue)

    run(scenario)


def test_done_without_new_work_does_not_requeue() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        queue.done(await queue.get())
        assert len(queue) == 0
        assert await nothing_queued(queue)

    run(scenario)


def test_a_key_is_never_processed_by_two_workers_at_once() -> None:
    async def scenario() -> tuple[int, dict[str, int]]:
        queue: WorkQueue[str] = WorkQueue()
        active: set[str] = set()
        overlaps = 0
        processed = {"a": 0, "b": 0}

        async def worker() -> None:
            nonlocal overlaps
            while sum(processed.values()) < 100:
                key = await queue.get()
                if key in active:
                    overlaps += 1
                active.add(key)
                # Events for the same key keep arriving while it is processed.
                queue.add(key)
                await asyncio.sleep(0)
                active.discard(key)
                processed[key] += 1
                queue.done(key)

        queue.add("a")
        queue.add("b")
        workers = [asyncio.create_task(worker()) for _ in range(4)]
        _, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return overlaps, processed

    overlaps, processed = run(scenario)
    assert overlaps == 0
    # Both keys keep being requeued, neither starves the other.
    assert processed["a"] >= 40
    assert processed["b"] >= 40


# --- Scheduler ---


@contextlib.asynccontextmanager
async def running(clock: FakeClock) -> AsyncIterator[tuple[Scheduler[str], WorkQueue[str]]]:
    queue: WorkQueue[str] = WorkQueue()
    scheduler = Scheduler(queue, clock)
    task = asyncio.create_task(scheduler.run())
    try:
        yield scheduler, queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def take(queue: WorkQueue[str], count: int) -> list[str]:
    keys = []
    for _ in range(count):
        key = await asyncio.wait_for(queue.get(), timeout=1)
        queue.done(key)
        keys.append(key)
    return keys


def test_due_keys_are_released_in_due_order() -> None:
    async def scenario() -> list[str]:
        clock = FakeClock.at(100.0)
        async with running(clock) as (scheduler, queue):
            scheduler.schedule("c", 30.0)
            scheduler.schedule("a", 10.0)
            scheduler.schedule("b", 20.0)
            keys = await take(queue, 3)
            assert len(scheduler) == 0
            assert scheduler.due_at("a") is None
            return keys

    assert run(scenario) == ["a", "b", "c"]


def test_a_key_is_held_until_due() -> None:
    async def scenario() -> None:
        clock = FakeClock.at(100.0)
        async with running(clock) as (scheduler, queue):
            scheduler.schedule("later", 500.0)
            await settle()
            assert await nothing_queued(queue)
            assert scheduler.due_at("later") == 500.0
            clock.set_time(500.0)
            # Any schedule() wakes the loop, which then sees the new time.
            scheduler.schedule("far", 10_000.0)
            assert await take(queue, 1) == ["later"]
            assert len(scheduler) == 1

    run(scenario)


def test_schedule_replaces_the_due_time() -> None:
    async def scenario() -> None:
        clock = FakeClock.at(100.0)
        async with running(clock) as (scheduler, queue):
            scheduler.schedule("a", 50.0)
            scheduler.schedule("a", 500.0)  # postponed before the loop saw it
            assert len(scheduler) == 1
            await settle()
            assert await nothing_queued(queue)
            scheduler.schedule("a", 90.0)  # brought forward
            assert await take(queue, 1) == ["a"]
            # The replaced due times are gone: nothing more when they pass.
            clock.set_time(1_000.0)
            scheduler.schedule("poke", 5_000.0)
            await settle()
            assert await nothing_queued(queue)

    run(scenario)


def test_cancel_forgets_the_key() -> None:
    async def scenario() -> None:
        clock = FakeClock.at(100.0)
        async with running(clock) as (scheduler, queue):
            scheduler.schedule("a", 500.0)
            scheduler.schedule("b", 600.0)
            scheduler.cancel("a")
            scheduler.cancel("never-scheduled")
            assert scheduler.due_at("a") is None
            assert len(scheduler) == 1
            clock.set_time(700.0)
            scheduler.schedule("c", 650.0)
            assert await take(queue, 2) == ["b", "c"]
            await settle()
            assert await nothing_queued(queue)

    run(scenario)


def test_rescheduling_after_release_queues_again() -> None:
    async def scenario() -> list[str]:
        clock = FakeClock.at(100.0)
        async with running(clock) as (scheduler, queue):
            scheduler.schedule("a", 10.0)
            first = await take(queue, 1)
            scheduler.schedule("a", 10.0)
            return first + await take(queue, 1)

    assert run(scenario) == ["a", "a"]


def test_scheduling_a_key_that_is_being_processed_does_not_hand_it_out_twice() -> None:
    async def scenario() -> None:
        clock = FakeClock.at(100.0)
        async with running(clock) as (scheduler, queue):
            scheduler.schedule("a", 10.0)
            key = await asyncio.wait_for(queue.get(), timeout=1)
            scheduler.schedule("a", 20.0)
            await settle()
            assert await nothing_queued(queue)
            queue.done(key)
            assert await take(queue, 1) == ["a"]

    run(scenario)


# --- Lane ---


def test_lanes_share_the_queue_without_mixing_their_keys() -> None:
    async def scenario() -> list[tuple[str, str]]:
        queue: WorkQueue[tuple[str, str]] = WorkQueue()
        scheduler = Scheduler(queue, FakeClock.at(100.0))
        certificates: Lane[str] = Lane("certificates", scheduler, queue)
        pods: Lane[str] = Lane("pods", scheduler, queue)
        certificates.add("a")
        pods.add("a")
        certificates.schedule("b", 500.0)
        pods.schedule("b", 600.0)
        assert (certificates.due_at("b"), pods.due_at("b")) == (500.0, 600.0)
        pods.cancel("b")
        assert (certificates.due_at("b"), pods.due_at("b")) == (500.0, None)
        return [await queue.get() for _ in range(2)]

    assert run(scenario) == [("certificates", "a"), ("pods", "a")]


def test_a_key_that_keeps_failing_waits_longer_each_time_until_forgotten() -> None:
    async def scenario() -> None:
        queue: WorkQueue[tuple[str, str]] = WorkQueue()
        scheduler = Scheduler(queue, FakeClock.at(100.0))
        lane: Lane[str] = Lane("pods", scheduler, queue)
        table = (1.0, 5.0, 30.0)
        assert [lane.retry("a", table) for _ in range(2)] == [0, 1]
        assert lane.due_at("a") == 105.0
        assert lane.retry("a", table) == 2
        assert lane.retry("a", table) == 3
        assert lane.due_at("a") == 130.0, "the table's last wait, from then on"
        assert lane.retry("b", table) == 0, "each key counts its own failures"
        lane.forget("a")
        assert lane.due_at("a") is None
        assert lane.retry("a", table) == 0
        assert lane.due_at("a") == 101.0

    run(scenario)
