"""The cycle collector runs less often, and still collects cycles."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from mtls_operator.runtime.collector import YOUNG_GENERATION_THRESHOLD, tune_collector


@pytest.fixture
def collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


@pytest.mark.usefixtures("collector")
def test_the_young_generation_waits_for_many_more_objects() -> None:
    _, middle, old = gc.get_threshold()
    tune_collector()
    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, middle, old)
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_what_lives_at_start_up_is_frozen_and_later_cycles_are_still_freed() -> None:
    tune_collector()
    assert gc.get_freeze_count() > 0
    first, second = Node(), Node()
    first.peer, second.peer = second, first
    gone = weakref.ref(first)
    del first, second
    assert gone() is not None, "a cycle outlives its last reference"
    # No explicit gc.collect(), which frees cycles even with the collector
    # off: enough new objects must set it off on its own.
    alive: list[list[None]] = [[] for _ in range(YOUNG_GENERATION_THRESHOLD + 1)]
    assert gone() is None
    assert len(alive) > YOUNG_GENERATION_THRESHOLD
