"""The reflector against a scripted API server: what it lists and watches,
from which resourceVersion, what its sink sees, and how long it waits."""

from __future__ import annotations

import asyncio
import contextlib

from mtls_operator.runtime import backoff
from mtls_operator.runtime.kube import Object
from mtls_operator.runtime.reflector import Reflector
from mtls_operator.runtime.watch_lines import MAX_WATCH_EVENT_BYTES

from support.clock import NOW, FakeClock
from support.fake_transport import (
    FakeApiServer,
    bookmark,
    collection,
    event,
    expired,
    named,
)
from support.loop import run

PATH = "/api/v1/namespaces/shop/secrets"


class RecordingSink:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []
        self._listing: list[str] | None = None

    def begin_relist(self) -> None:
        self._listing = []

    def add_page(self, items: list[Object]) -> None:
        assert self._listing is not None
        self._listing += [item["metadata"]["name"] for item in items]

    def end_relist(self, resource_version: str) -> None:
        assert self._listing is not None
        self.seen.append(("LIST", *self._listing))
        self._listing = None

    def apply(self, event_type: str, obj: Object) -> None:
        self.seen.append((event_type, obj["metadata"]["name"]))


class ProblemClock(FakeClock):
    """Notes the reflector's problem at each wait after a failure."""

    def __init__(self) -> None:
        super().__init__(NOW)
        self.reflector: Reflector | None = None
        self.problems: list[str | None] = []

    async def sleep(self, seconds: float) -> None:
        if self.reflector is not None:
            self.problems.append(self.reflector.problem)
        await super().sleep(seconds)


def reflect(
    server: FakeApiServer, *, absent_is_empty: bool = False
) -> tuple[RecordingSink, ProblemClock, Reflector]:
    """Run a reflector until the server has nothing scripted left for it."""
    sink, clock = RecordingSink(), ProblemClock()
    reflector = clock.reflector = Reflector(
        server.client(clock), PATH, sink, absent_is_empty=absent_is_empty, clock=clock
    )

    async def scenario() -> None:
        task = asyncio.create_task(reflector.run())
        await server.idle()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run(scenario)
    return sink, clock, reflector


def watched_from(server: FakeApiServer) -> list[str]:
    return [w.params["resourceVersion"] for w in server.watches()]


def test_lists_then_watches_from_the_listed_version() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([named("a", "5")], "10"))
    server.stream(PATH, event("ADDED", named("b", "11")), event("DELETED", named("a", "12")))

    sink, clock, _ = reflect(server)

    assert sink.seen == [("LIST", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert watched_from(server) == ["10", "12"]
    assert server.watches()[0].params["allowWatchBookmarks"] == "true"
    assert clock.slept == []


def test_a_watch_too_old_to_continue_lists_again_at_once() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([named("a", "5")], "10"))
    server.stream(PATH, expired())
    server.answer("GET", PATH, collection([named("b", "15")], "20"))

    sink, clock, _ = reflect(server)

    assert sink.seen == [("LIST", "a"), ("LIST", "b")]
    assert [r.watch for r in server.received] == [False, True, False, True]
    assert watched_from(server) == ["10", "20"]
    assert clock.slept == []


def test_a_watch_refused_with_410_lists_again() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([], "10"))
    server.stream(PATH, status=410)
    server.answer("GET", PATH, collection([named("b", "15")], "20"))

    sink, _, _ = reflect(server)

    assert sink.seen == [("LIST",), ("LIST", "b")]
    assert watched_from(server) == ["10", "20"]


def test_bookmarks_advance_the_version_and_reach_no_sink() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([], "10"))
    server.stream(PATH, bookmark("15"), bookmark("17"))

    sink, _, _ = reflect(server)

    assert sink.seen == [("LIST",)]
    # The stream ended: opened again from the last bookmark, not re-listed.
    assert watched_from(server) == ["10", "17"]
    assert len(server.calls("GET")) == 1


def test_a_failing_watch_is_opened_again_after_growing_waits() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([], "10"))
    for _ in range(len(backoff.WATCH) + 1):
        server.stream(PATH, end=ConnectionResetError("reset by peer"))

    _, clock, _ = reflect(server)

    assert clock.slept == [*backoff.WATCH, backoff.WATCH[-1]]
    # From where it was: a dropped connection loses nothing.
    assert set(watched_from(server)) == {"10"}


def test_an_event_resets_the_back_off() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([], "10"))
    server.stream(PATH, end=ConnectionResetError())
    server.stream(PATH, end=ConnectionResetError())
    server.stream(PATH, event("ADDED", named("a", "11")), end=ConnectionResetError())

    _, clock, _ = reflect(server)

    assert clock.slept == [backoff.WATCH[0], backoff.WATCH[1], backoff.WATCH[0]]


def test_a_silent_watch_is_opened_again_at_once_from_where_it_was() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([], "10"))
    server.stream(PATH, event("ADDED", named("a", "11")), end=TimeoutError())

    sink, clock, _ = reflect(server)

    assert sink.seen == [("LIST",), ("ADDED", "a")]
    assert watched_from(server) == ["10", "11"]
    assert clock.slept == []


def test_an_event_over_the_size_limit_is_read_by_listing_again() -> None:
    server = FakeApiServer()
    server.answer("GET", PATH, collection([], "10"))
    # The start of one line longer than any object the API server stores.
    server.stream(PATH, b'{"type": "ADDED", "object": ' + b" " * MAX_WATCH_EVENT_BYTES)
    server.answer("GET", PATH, collection([named("huge", "11")], "12"))

    sink, clock, _ = reflect(server)

    assert sink.seen == [("LIST",), ("LIST", "huge")]
    assert watched_from(server) == ["10", "12"]
    assert clock.slept == [backoff.WATCH[0]]


def test_a_refusal_that_lasts_is_a_problem_until_a_list_works() -> None:
    server = FakeApiServer()
    server.refuse("GET", PATH, 403, "Forbidden", times=3)
    server.answer("GET", PATH, collection([], "10"))

    sink, clock, reflector = reflect(server)

    assert clock.problems[:2] == [None, None], "an API server still starting"
    assert str(clock.problems[2]).startswith(f"cannot watch {PATH} (403 Forbidden: Forbidden)")
    assert sink.seen == [("LIST",)]
    assert reflector.problem is None
    assert clock.slept == list(backoff.WATCH[:3])


def test_a_resource_not_served_reads_as_empty_and_is_asked_for_again() -> None:
    server = FakeApiServer()
    server.refuse("GET", PATH, 404, "NotFound")
    server.answer("GET", PATH, collection([named("a", "5")], "10"))

    sink, clock, _ = reflect(server, absent_is_empty=True)

    assert sink.seen == [("LIST",), ("LIST", "a")]
    assert clock.slept == [backoff.WATCH[-1]]
