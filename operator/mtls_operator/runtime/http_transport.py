"""The transport of the API client on aiohttp (already kopf's): a pool of
connections for calls and one for watches, to the server a login names."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import kopf

from mtls_operator.runtime.tls import ssl_context
from mtls_operator.runtime.transport import NoAnswer, Reply, Request, WatchReply


class HttpTransport:
    def __init__(self, info: kopf.ConnectionInfo, max_connections: int) -> None:
        self._server = info.server.rstrip("/")
        context: ssl.SSLContext | bool = (
            ssl_context(info) if info.server.startswith("https") else False
        )
        self._session = _session(context, max_connections, info.trust_env)
        # Watches hold a connection for minutes each: they get their own pool,
        # so that however many there are, requests always find a connection.
        self._watch_session = _session(context, 0, info.trust_env)

    async def call(self, request: Request) -> Reply:
        try:
            async with self._session.request(
                request.method,
                self._server + request.path,
                params=request.params,
                data=request.body,
                headers=request.headers,
                timeout=aiohttp.ClientTimeout(total=request.timeout),
            ) as response:
                return Reply(
                    response.status, await response.read(), response.headers.get("Retry-After")
                )
        except (aiohttp.ClientConnectionError, TimeoutError) as err:
            raise NoAnswer(f"{type(err).__name__}: {err}") from err

    @asynccontextmanager
    async def watch(self, request: Request) -> AsyncIterator[WatchReply]:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=request.timeout)
        async with self._watch_session.get(
            self._server + request.path,
            params=request.params,
            headers=request.headers,
            timeout=timeout,
        ) as response:
            yield _WatchResponse(response, request.timeout)

    async def close(self) -> None:
        await self._session.close()
        await self._watch_session.close()


class _WatchResponse:
    def __init__(self, response: aiohttp.ClientResponse, silence: float) -> None:
        self._response = response
        self._silence = silence

    @property
    def status(self) -> int:
        return self._response.status

    async def read(self) -> bytes:
        return await self._response.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        # Chunks as they come, not lines: aiohttp's readline refuses lines
        # longer than its buffer, far shorter than objects can be. Each read
        # is timed here, not only by aiohttp's sock_read: aiohttp stops that
        # timer, and never ends the read, when the connection is closed on
        # this side (a session closed under it), and the watch would wait
        # for good. Either timeout raises a TimeoutError.
        content = self._response.content
        while True:
            async with asyncio.timeout(self._silence):
                chunk = await content.readany()
            if not chunk:
                return
            yield chunk


def connect(info: kopf.ConnectionInfo, max_connections: int) -> HttpTransport:
    return HttpTransport(info, max_connections)


def _session(context: ssl.SSLContext | bool, limit: int, trust_env: bool) -> aiohttp.ClientSession:
    """A session of at most `limit` connections (0: no limit). No cookie jar,
    as in client-go: the API server sets no cookies, and a jar would be
    searched on every request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, limit=limit),
        trust_env=trust_env,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
