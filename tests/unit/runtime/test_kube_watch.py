"""The watch stream as the API server sends it: one JSON event a line, each
line as long as its object, which a tenant makes as large as the API server
stores (a Secret of 1 MiB, a custom resource of 1.5 MiB)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import kopf
import pytest
from aiohttp import web

from mtls_operator.runtime.http_transport import HttpTransport
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.transport import Request
from mtls_operator.runtime.watch_lines import MAX_WATCH_EVENT_BYTES, WatchEventTooLarge, WatchLines

from support.loop import settle

PATH = "/api/v1/secrets"


def event(name: str, padding: int = 0) -> bytes:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": "7"},
        "data": {"big": "x" * padding},
    }
    return json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def local_server(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """An HTTP server on a free local port answering GETs of `routes`: its URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving(chunks: list[bytes]) -> AsyncIterator[Kube]:
    """A client of a local HTTP server whose watch answer is `chunks`,
    written one by one as they are."""

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response

    async with local_server({PATH: watch}) as server:

        async def login() -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=server)

        kube = Kube(login)
        try:
            yield kube
        finally:
            await kube.close()


def watched_names(chunks: list[bytes]) -> list[str]:
    async def scenario() -> list[str]:
        async with serving(chunks) as kube:
            return [obj["metadata"]["name"] async for _, obj in kube.watch(PATH, "1")]

    return asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_event_as_large_as_the_api_server_stores_is_read() -> None:
    # 600 KiB: over aiohttp's line limit, under a Secret's 1 MiB.
    chunks = [event("before"), event("large", 600 * 1024), event("after")]
    assert watched_names(chunks) == ["before", "large", "after"]


def test_events_split_anyhow_across_chunks_are_read() -> None:
    stream = event("a") + event("b", 3 * 1024 * 1024) + b"\n" + event("c")
    chunks = [stream[i : i + 7919] for i in range(0, len(stream), 7919)]
    assert watched_names(chunks) == ["a", "b", "c"]


def test_an_event_larger_than_any_object_ends_the_watch_with_one_line() -> None:
    seen: list[str] = []

    async def scenario() -> None:
        async with serving([event("a"), event("huge", MAX_WATCH_EVENT_BYTES)]) as kube:
            async for _, obj in kube.watch(PATH, "1"):
                seen.append(obj["metadata"]["name"])

    with pytest.raises(WatchEventTooLarge, match=rf"^a watch event of {PATH} is larger than"):
        asyncio.run(asyncio.wait_for(scenario(), 60))
    assert seen == ["a"]


@pytest.mark.parametrize(
    ("chunks", "events"),
    [
        ([b'{"a":1}\n{"b":2}\n'], [{"a": 1}, {"b": 2}]),
        ([b'{"a"', b":1}\n{", b'"b":2}\n'], [{"a": 1}, {"b": 2}]),
        ([b"\n \n", b'{"a":1}\r\n', b"\n"], [{"a": 1}]),
        ([b'{"a":1}'], []),  # not ended: not an event yet
    ],
)
def test_watch_lines(chunks: list[bytes], events: list[dict[str, int]]) -> None:
    reader = WatchLines(64, "/api/v1/secrets")
    assert [json.loads(line) for chunk in chunks for line in reader.feed(chunk)] == events


def test_watch_lines_refuse_a_line_over_the_limit_before_it_ends() -> None:
    reader = WatchLines(16, "/api/v1/secrets")
    assert reader.feed(b'{"a":1}\n' + b"x" * 16) == [b'{"a":1}']
    with pytest.raises(WatchEventTooLarge, match=r"^a watch event of /api/v1/secrets is larger"):
        reader.feed(b"x")


SECRET = "/api/v1/namespaces/shop/secrets/web-tls"


def test_a_watch_goes_on_while_another_request_logs_in_again() -> None:
    """A rotated token is picked up by the request that was refused: the watches the old one
    opened go on (the API server checked it when they began) until they end by themselves."""
    second_event = asyncio.Event()
    tokens: list[str] = []
    seen_tokens: list[str] = []

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(event("a"))
        await second_event.wait()
        await response.write(event("b"))
        await response.write_eof()
        return response

    async def get(request: web.Request) -> web.Response:
        seen_tokens.append(request.headers["Authorization"])
        if len(seen_tokens) == 1:
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        return web.json_response({"metadata": {"name": "web-tls"}})

    async def scenario() -> list[str]:
        async with local_server({PATH: watch, SECRET: get}) as server:
            return await watched_across_a_login(server)

    async def watched_across_a_login(server: str) -> list[str]:
        async def login() -> kopf.ConnectionInfo:
            tokens.append(f"token-{len(tokens) + 1}")
            return kopf.ConnectionInfo(server=server, token=tokens[-1])

        kube = Kube(login)
        names: list[str] = []
        first_event = asyncio.Event()

        async def watching() -> None:
            async for _, obj in kube.watch(PATH, "1"):
                names.append(obj["metadata"]["name"])
                first_event.set()

        try:
            # Read as a reflector reads it: waiting for the next event while the call is made.
            reading = asyncio.create_task(watching())
            await first_event.wait()
            assert await kube.get(SECRET) == {"metadata": {"name": "web-tls"}}
            second_event.set()
            await asyncio.wait({reading}, timeout=5)
            assert reading.done(), "the watch opened before the fresh login hangs"
            reading.result()
            return names
        finally:
            reading.cancel()
            second_event.set()
            await kube.close()

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == ["a", "b"]
    assert seen_tokens == ["Bearer token-1", "Bearer token-2"]


def test_a_watch_whose_connection_is_closed_under_it_times_out() -> None:
    """However its connection ends, a silent watch is noticed after the request's timeout:
    aiohttp stops its own read timer when the connection is closed on this side."""
    done = asyncio.Event()

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(event("a"))
        await done.wait()
        return response

    async def scenario() -> BaseException | None:
        async with local_server({PATH: watch}) as server:
            return await read_after_close(HttpTransport(kopf.ConnectionInfo(server=server), 4))

    async def read_after_close(transport: HttpTransport) -> BaseException | None:
        try:
            async with transport.watch(Request("GET", PATH, None, {}, None, 0.2)) as response:
                chunks = aiter(response.chunks())
                assert await anext(chunks) == event("a")
                reading = asyncio.ensure_future(anext(chunks))
                await settle()  # waiting for the next chunk
                await transport.close()
                await asyncio.wait({reading}, timeout=5)
                if not reading.done():
                    reading.cancel()
                    return None
                return reading.exception()
        finally:
            done.set()
            await transport.close()

    assert isinstance(asyncio.run(scenario()), TimeoutError)
