"""The token bucket and the turns it grants."""

from __future__ import annotations

import pytest

from mtls_operator.runtime.rate_limit import TokenBucket, Turns

from support.clock import FakeClock


def test_bucket_allows_a_burst_then_spaces_requests() -> None:
    clock = FakeClock.at(0.0)
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(6)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.5]


def test_bucket_refills_with_time_up_to_the_burst() -> None:
    clock = FakeClock.at(0.0)
    bucket = TokenBucket(rate=2.0, burst=3, clock=clock)
    for _ in range(4):
        bucket.reserve()
    clock.set_time(1.0)  # one token owed, two earned
    assert bucket.reserve() == 0.0
    assert bucket.reserve() == pytest.approx(0.5)
    clock.set_time(1_000.0)  # refilled, but never above the burst
    assert [bucket.reserve() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


def test_bucket_reservations_are_spaced_by_the_rate() -> None:
    clock = FakeClock.at(50.0)
    bucket = TokenBucket(rate=20.0, burst=1, clock=clock)
    waits = [bucket.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.05, 0.10, 0.15, 0.20])


def test_a_turn_is_kept_until_it_comes() -> None:
    clock = FakeClock.at(0.0)
    turns = Turns(TokenBucket(rate=1.0, burst=1, clock=clock), clock)
    assert turns.wait("a") is None  # within the burst: go now
    assert turns.wait("b") == 1.0
    assert turns.wait("c") == 2.0
    clock.set_time(0.5)
    assert (turns.wait("b"), turns.wait("c")) == (1.0, 2.0), "an early look keeps its turn"
    clock.set_time(1.0)
    assert turns.wait("b") is None
    turns.forget("c")
    # The bucket owes two turns already (c's old one included): c now waits 2 s more.
    assert turns.wait("c") == 3.0, "a forgotten turn is reserved anew"
