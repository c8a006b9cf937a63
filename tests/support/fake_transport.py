"""An API server that a test scripts, in the place of the API client's HTTP
transport. Each call is answered by the next answer scripted for its method
and path, each watch by the next stream scripted for its path. A request
nothing was scripted for waits, as a quiet API server would, and marks the
server idle: a test waits for the code under test to run out of script,
never for time to pass."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import kopf

from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.kube import Kube, Object
from mtls_operator.runtime.transport import NoAnswer, Reply, Request, WatchReply

SERVER = "https://api.test"
TOKEN = "token-1"


@dataclass(frozen=True)
class Received:
    """A request as the server saw it."""

    request: Request
    watch: bool

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def path(self) -> str:
        return self.request.path

    @property
    def params(self) -> Mapping[str, str]:
        return self.request.params or {}

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    @property
    def body(self) -> Any:
        """The decoded JSON, or None."""
        return json.loads(self.request.body) if self.request.body is not None else None


@dataclass(frozen=True)
class Stream:
    """A watch answer: its chunks, sent as they are, then its end: None, the
    server closed it; an exception, raised by the read that follows the last
    chunk (TimeoutError: the stream went silent; ConnectionResetError: it
    was cut)."""

    chunks: tuple[bytes, ...] = ()
    status: int = 200
    end: BaseException | None = None


class FakeApiServer:
    def __init__(self) -> None:
        self.received: list[Received] = []
        # The credentials of each login that connected, in order.
        self.logins: list[kopf.ConnectionInfo] = []
        # The transport of each login, in the same order.
        self.transports: list[_Transport] = []
        self._calls: dict[tuple[str, str], deque[Reply | Exception]] = defaultdict(deque)
        self._watches: dict[str, deque[Stream]] = defaultdict(deque)
        self._idle = asyncio.Event()

    # --- Script. ---

    def answer(
        self,
        method: str,
        path: str,
        body: Object | None = None,
        *,
        status: int = 200,
        retry_after: str | None = None,
        times: int = 1,
    ) -> None:
        content = json.dumps(body).encode() if body is not None else b""
        for _ in range(times):
            self._calls[(method, path)].append(Reply(status, content, retry_after))

    def refuse(self, method: str, path: str, status: int, reason: str, *, times: int = 1) -> None:
        body = status_object(status, reason)
        self.answer(method, path, body, status=status, times=times)

    def drop(self, method: str, path: str) -> None:
        """The next such call gets no answer (connection refused)."""
        self._calls[(method, path)].append(NoAnswer("ClientConnectorError: connection refused"))

    def stream(
        self, path: str, *chunks: bytes, status: int = 200, end: BaseException | None = None
    ) -> None:
        self._watches[path].append(Stream(tuple(chunks), status, end))

    # --- What happened. ---

    async def idle(self) -> None:
        """Return once a request has found nothing scripted."""
        await self._idle.wait()

    def calls(self, method: str | None = None) -> list[Received]:
        return [r for r in self.received if not r.watch and method in (None, r.method)]

    def watches(self) -> list[Received]:
        return [r for r in self.received if r.watch]

    def client(self, clock: Clock) -> Kube:
        """An API client of this server, logged in with a fixed token."""

        async def login() -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=SERVER, token=TOKEN)

        return Kube(login, connect=self.connect, clock=clock)

    # --- The transport seam. ---

    def connect(self, info: kopf.ConnectionInfo, max_connections: int) -> _Transport:
        self.logins.append(info)
        transport = _Transport(self)
        self.transports.append(transport)
        return transport

    def receive(self, request: Request, *, watch: bool) -> None:
        # Copied as they are now: the client goes on to change its query
        # (the next page's continue token) after the request is sent.
        sent = replace(request, params=dict(request.params or {}), headers=dict(request.headers))
        self.received.append(Received(sent, watch))

    async def wait_forever(self) -> None:
        """What a request with nothing scripted does: the test ends it."""
        self._idle.set()
        await asyncio.Future()

    def next_answer(self, method: str, path: str) -> Reply | Exception | None:
        queue = self._calls.get((method, path))
        return queue.popleft() if queue else None

    def next_stream(self, path: str) -> Stream | None:
        queue = self._watches.get(path)
        return queue.popleft() if queue else None


class _Transport:
    def __init__(self, server: FakeApiServer) -> None:
        self._server = server
        self.closed = False

    async def call(self, request: Request) -> Reply:
        self._server.receive(request, watch=False)
        answer = self._server.next_answer(request.method, request.path)
        if answer is None:
            await self._server.wait_forever()
        if isinstance(answer, Exception):
            raise answer
        assert answer is not None
        return answer

    @asynccontextmanager
    async def watch(self, request: Request) -> AsyncIterator[WatchReply]:
        self._server.receive(request, watch=True)
        stream = self._server.next_stream(request.path)
        if stream is None:
            await self._server.wait_forever()
        assert stream is not None
        yield _StreamReply(stream)

    async def close(self) -> None:
        self.closed = True


class _StreamReply:
    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    @property
    def status(self) -> int:
        return self._stream.status

    async def read(self) -> bytes:
        return b"".join(self._stream.chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._stream.chunks:
            yield chunk
            await asyncio.sleep(0)
        if self._stream.end is not None:
            raise self._stream.end


# --- Bodies as the API server writes them. ---


def named(name: str, resource_version: str, namespace: str = "shop") -> Object:
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version}}


def collection(
    items: list[Object], resource_version: str, continue_token: str | None = None
) -> Object:
    metadata = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": "List", "metadata": metadata, "items": items}


def event(event_type: str, obj: Object) -> bytes:
    """One line of a watch stream."""
    return json.dumps({"type": event_type, "object": obj}).encode() + b"\n"


def bookmark(resource_version: str) -> bytes:
    return event("BOOKMARK", {"metadata": {"resourceVersion": resource_version}})


def status_object(code: int, reason: str, message: str = "") -> Object:
    return {
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message or reason,
    }


def expired() -> bytes:
    """The watch event that says the resourceVersion is too old (410 Gone)."""
    return event("ERROR", status_object(410, "Expired", "too old resource version"))
