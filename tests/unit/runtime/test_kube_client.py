"""The API client against a scripted API server: what each call sends,
how answers and refusals come back, what is retried and after how long,
lists in pages and watches event by event."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from mtls_operator.runtime import backoff
from mtls_operator.runtime.api_errors import ApiError, Gone
from mtls_operator.runtime.kube import MERGE_PATCH, Kube, Stalled

from support.clock import NOW, FakeClock
from support.fake_transport import (
    TOKEN,
    FakeApiServer,
    bookmark,
    collection,
    event,
    expired,
    named,
    status_object,
)
from support.loop import run

T = TypeVar("T")
SECRETS = "/api/v1/namespaces/shop/secrets"
SECRET = f"{SECRETS}/web-tls"


def against(server: FakeApiServer, call: Callable[[Kube], Awaitable[T]]) -> tuple[T, FakeClock]:
    clock = FakeClock(NOW)

    async def scenario() -> T:
        kube = server.client(clock)
        try:
            return await call(kube)
        finally:
            await kube.close()

    return run(scenario), clock


def test_a_write_is_one_request_with_its_body_and_credentials() -> None:
    server = FakeApiServer()
    server.answer("POST", SECRETS, named("web-tls", "1"), status=201)

    created, _ = against(server, lambda kube: kube.create(SECRETS, named("web-tls", "")))

    assert created == named("web-tls", "1")
    [sent] = server.calls()
    assert sent.body == named("web-tls", "")
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Content-Type"] == "application/json"


def test_a_merge_patch_says_so() -> None:
    server = FakeApiServer()
    server.answer("PATCH", SECRET, named("web-tls", "2"))

    against(server, lambda kube: kube.merge_patch(SECRET, {"metadata": {"labels": {"a": "b"}}}))

    [sent] = server.calls()
    assert sent.headers["Content-Type"] == MERGE_PATCH
    assert sent.body == {"metadata": {"labels": {"a": "b"}}}


def test_an_object_that_does_not_exist_reads_as_none_and_deletes_as_done() -> None:
    server = FakeApiServer()
    server.refuse("GET", SECRET, 404, "NotFound")
    server.refuse("DELETE", SECRET, 404, "NotFound")

    async def calls(kube: Kube) -> object:
        found = await kube.get(SECRET)
        await kube.delete(SECRET)
        return found

    found, _ = against(server, calls)
    assert found is None


def test_a_refusal_carries_the_servers_status_reason_and_message() -> None:
    server = FakeApiServer()
    server.answer(
        "PUT", SECRET, status_object(409, "Conflict", "the object has been modified"), status=409
    )

    with pytest.raises(ApiError) as caught:
        against(server, lambda kube: kube.replace(SECRET, named("web-tls", "1")))
    assert caught.value.conflict
    assert str(caught.value) == "409 Conflict: the object has been modified"


def test_busy_answers_are_retried_after_the_servers_retry_after_at_most_10s() -> None:
    server = FakeApiServer()
    server.answer("GET", SECRET, status=429, retry_after="3")
    server.answer("GET", SECRET, status=503, retry_after="60")
    server.answer("GET", SECRET, status=500)
    server.answer("GET", SECRET, named("web-tls", "1"))

    found, clock = against(server, lambda kube: kube.get(SECRET))

    assert found == named("web-tls", "1")
    assert clock.slept == [3.0, 10.0, backoff.REQUEST[2]]


def test_retries_end_with_the_last_refusal() -> None:
    server = FakeApiServer()
    server.refuse("GET", SECRET, 503, "ServiceUnavailable", times=len(backoff.REQUEST) + 1)

    with pytest.raises(ApiError, match=r"^503 ServiceUnavailable"):
        against(server, lambda kube: kube.get(SECRET))
    assert len(server.calls()) == len(backoff.REQUEST) + 1


def test_a_call_that_is_not_retried_is_made_once() -> None:
    server = FakeApiServer()
    server.refuse("POST", SECRETS, 503, "ServiceUnavailable")

    with pytest.raises(ApiError, match=r"^503"):
        against(server, lambda kube: kube.create(SECRETS, named("a", ""), retry=False))
    assert len(server.calls()) == 1


def test_no_answer_is_retried_then_reported_as_unreachable() -> None:
    server = FakeApiServer()
    server.drop("GET", SECRET)
    server.answer("GET", SECRET, named("web-tls", "1"))
    server.drop("GET", SECRET)

    clock = FakeClock(NOW)

    async def calls() -> None:
        kube = server.client(clock)
        assert await kube.get(SECRET) == named("web-tls", "1")
        await kube.get(SECRET, retry=False)

    with pytest.raises(ApiError, match=r"^ClientConnectorError: connection refused$") as caught:
        run(calls)
    assert caught.value.status == 0
    assert caught.value.reason == "Unreachable"
    assert clock.slept == [backoff.REQUEST[0]]


def test_a_401_logs_in_again_once() -> None:
    server = FakeApiServer()
    server.refuse("GET", SECRET, 401, "Unauthorized", times=2)

    with pytest.raises(ApiError, match=r"^401 Unauthorized"):
        against(server, lambda kube: kube.get(SECRET))
    assert len(server.logins) == 2
    assert len(server.calls()) == 2


def test_a_list_reads_every_page_and_ends_with_the_version_to_watch_from() -> None:
    server = FakeApiServer()
    server.answer("GET", SECRETS, collection([named("a", "1")], "", continue_token="page-2"))
    server.answer("GET", SECRETS, collection([named("b", "2")], "30"))

    (items, version), _ = against(
        server, lambda kube: kube.list(SECRETS, {"labelSelector": "app=web"})
    )

    assert [item["metadata"]["name"] for item in items] == ["a", "b"]
    assert version == "30"
    first, second = (sent.params for sent in server.calls())
    assert first == {"labelSelector": "app=web", "limit": "500"}
    assert second == {**first, "continue": "page-2"}


def test_metadata_only_reads_ask_for_partial_objects() -> None:
    server = FakeApiServer()
    server.answer("GET", SECRETS, collection([], "30"))
    server.stream(SECRETS)

    async def calls(kube: Kube) -> None:
        await kube.list(SECRETS, metadata_only=True)
        async for _ in kube.watch(SECRETS, "30", metadata_only=True):
            pass

    against(server, calls)
    listed, watched = server.received
    assert "as=PartialObjectMetadataList" in listed.headers["Accept"]
    assert "as=PartialObjectMetadata;" in watched.headers["Accept"]


def watched(server: FakeApiServer) -> list[tuple[str, str]]:
    async def events(kube: Kube) -> list[tuple[str, str]]:
        return [
            (kind, obj["metadata"].get("name", ""))
            async for kind, obj in kube.watch(SECRETS, "30", {"labelSelector": "app=web"})
        ]

    return against(server, events)[0]


def test_a_watch_yields_events_and_bookmarks_from_the_version_given() -> None:
    server = FakeApiServer()
    server.stream(
        SECRETS, event("ADDED", named("a", "31")) + bookmark("35")[:7], bookmark("35")[7:]
    )

    assert watched(server) == [("ADDED", "a"), ("BOOKMARK", "")]
    [sent] = server.watches()
    assert sent.params == {
        "labelSelector": "app=web",
        "watch": "true",
        "allowWatchBookmarks": "true",
        "resourceVersion": "30",
        "timeoutSeconds": "290",
    }


def test_a_watch_too_old_to_continue_raises_gone() -> None:
    server = FakeApiServer()
    server.stream(SECRETS, event("ADDED", named("a", "31")), expired())

    with pytest.raises(Gone):
        watched(server)


def test_an_error_event_raises_its_status() -> None:
    server = FakeApiServer()
    server.stream(SECRETS, event("ERROR", status_object(500, "InternalError", "etcd")))

    with pytest.raises(ApiError, match=r"^500 InternalError: etcd$"):
        watched(server)


def test_a_silent_watch_raises_stalled() -> None:
    server = FakeApiServer()
    server.stream(SECRETS, event("ADDED", named("a", "31")), end=TimeoutError())

    with pytest.raises(Stalled):
        watched(server)


def test_a_watch_refused_with_401_logs_in_again_for_the_next_call() -> None:
    server = FakeApiServer()
    server.stream(SECRETS, json.dumps(status_object(401, "Unauthorized")).encode(), status=401)
    server.answer("GET", SECRET, named("web-tls", "1"))

    async def calls(kube: Kube) -> None:
        with pytest.raises(ApiError, match=r"^401"):
            async for _ in kube.watch(SECRETS, "30"):
                pass
        await kube.get(SECRET)

    against(server, calls)
    assert len(server.logins) == 2


def test_a_fresh_login_closes_the_old_connection_once_its_watches_end() -> None:
    server = FakeApiServer()
    server.stream(SECRETS, event("ADDED", named("a", "31")), event("ADDED", named("b", "32")))
    server.refuse("GET", SECRET, 401, "Unauthorized")
    server.answer("GET", SECRET, named("web-tls", "1"))
    open_while_watched: list[bool] = []

    async def calls(kube: Kube) -> None:
        async for _, obj in kube.watch(SECRETS, "30"):
            if obj["metadata"]["name"] == "a":
                await kube.get(SECRET)
                open_while_watched.append(not server.transports[0].closed)

    against(server, calls)
    assert len(server.logins) == 2
    assert open_while_watched == [True], "the watch reads on with the old credentials"
    assert server.transports[0].closed, "and its connection is closed once it ends"


def test_a_connection_refused_with_no_one_else_on_it_is_closed_at_once() -> None:
    server = FakeApiServer()
    server.refuse("GET", SECRET, 401, "Unauthorized")
    server.answer("GET", SECRET, named("web-tls", "1"))
    closed_after_the_call: list[bool] = []

    async def calls(kube: Kube) -> None:
        await kube.get(SECRET)
        closed_after_the_call.append(server.transports[0].closed)

    against(server, calls)
    assert closed_after_the_call == [True]


def test_closing_the_client_closes_every_connection() -> None:
    server = FakeApiServer()
    server.stream(SECRETS, event("ADDED", named("a", "31")))
    server.refuse("GET", SECRET, 401, "Unauthorized")
    server.answer("GET", SECRET, named("web-tls", "1"))

    async def calls(kube: Kube) -> None:
        watch = aiter(kube.watch(SECRETS, "30"))
        await anext(watch)
        await kube.get(SECRET)  # a fresh login while the watch is under way
        await kube.close()

    against(server, calls)
    assert [transport.closed for transport in server.transports] == [True, True]


def test_concurrent_calls_log_in_once() -> None:
    server = FakeApiServer()
    server.answer("GET", SECRET, named("web-tls", "1"), times=5)

    async def calls(kube: Kube) -> None:
        await asyncio.gather(*(kube.get(SECRET) for _ in range(5)))

    against(server, calls)
    assert len(server.logins) == 1


def test_a_call_that_is_not_retried_is_still_made_again_after_a_fresh_login() -> None:
    server = FakeApiServer()
    server.refuse("GET", SECRET, 401, "Unauthorized")
    server.answer("GET", SECRET, named("web-tls", "1"))

    found, _ = against(server, lambda kube: kube.get(SECRET, retry=False))

    assert found == named("web-tls", "1")
    assert len(server.logins) == 2
