"""The one module that talks to the Kubernetes API.

A small asynchronous REST client with the few calls the operator makes:
retries, paging, watches decoded line by line, and a fresh login on a 401.
Credentials come from `runtime.login`; the bytes travel through a
`runtime.transport` (aiohttp in the operator, a scripted server in tests).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mtls_operator.runtime import backoff, http_transport
from mtls_operator.runtime.api_errors import ApiError, api_error
from mtls_operator.runtime.clock import SYSTEM_CLOCK, Clock
from mtls_operator.runtime.login import Login, authorization
from mtls_operator.runtime.transport import Connect, NoAnswer, Request, Transport
from mtls_operator.runtime.watch_lines import MAX_WATCH_EVENT_BYTES, WatchLines

logger = logging.getLogger(__name__)

Object = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace, name)

MERGE_PATCH = "application/merge-patch+json"
_RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_WATCH_TIMEOUT_SECONDS = 290
# The API server sends every watch a bookmark about once a minute, however
# quiet the collection: a watch silent for longer has stalled (a frozen API
# server, a half-open connection) and is opened again.
WATCH_INACTIVITY_SECONDS = 70.0
_LIST_PAGE_SIZE = 500
# Metadata-only reads, as client-go's metadata informers make them: the API
# server sends each object's metadata alone (a Node's status, which can be
# tens of kilobytes, never crosses the wire).
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_REQUEST_TIMEOUT = 30.0


class Stalled(Exception):
    """A watch delivered nothing, not even a bookmark, for WATCH_INACTIVITY_SECONDS."""


def object_key(body: Mapping[str, Any]) -> ObjectKey:
    metadata = body.get("metadata") or {}
    namespace = metadata.get("namespace", "")
    # Keys outlive the bodies they are read from (in the cache, its indexes
    # and the work queue): one copy of each namespace's name, not one per
    # object, where objects are counted in ten thousands.
    if type(namespace) is str:
        namespace = sys.intern(namespace)
    return (namespace, metadata.get("name", ""))


class Pages:
    def __init__(
        self, kube: Kube, path: str, params: dict[str, str], *, metadata_only: bool = False
    ) -> None:
        self._kube, self._path, self._params = kube, path, params
        self._accept = _METADATA_LIST if metadata_only else None
        self.resource_version = ""

    def __aiter__(self) -> AsyncIterator[list[Object]]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[list[Object]]:
        query = {**self._params, "limit": str(_LIST_PAGE_SIZE)}
        while True:
            page = await self._kube.request("GET", self._path, params=query, accept=self._accept)
            yield page.get("items") or []
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                self.resource_version = str(metadata.get("resourceVersion", ""))
                return
            query["continue"] = token


@dataclass(eq=False)
class _Connection:
    """A transport and the headers that present one login's credentials."""

    transport: Transport
    headers: dict[str, str]
    # Calls and watches under way on it.
    users: int = 0
    # Replaced after a 401: closed once its last call or watch is done.
    retired: bool = False


class Kube:
    """The API client. One instance per process; safe for concurrent use."""

    def __init__(
        self,
        login: Login,
        *,
        max_connections: int = 64,
        connect: Connect = http_transport.connect,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._login = login
        self._max_connections = max_connections
        self._connect_transport = connect
        self._clock = clock
        self._connection: _Connection | None = None
        # Replaced, with watches still reading from them.
        self._retired: list[_Connection] = []
        self._connecting = asyncio.Lock()

    async def close(self) -> None:
        connections, self._retired = self._retired, []
        if self._connection is not None:
            connections.append(self._connection)
            self._connection = None
        for connection in connections:
            await connection.transport.close()

    # --- Requests. ---

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
        accept: str | None = None,
        retry: bool = True,
        timeout: float = _REQUEST_TIMEOUT,
    ) -> Object:
        """One API call. Unless `retry` is off, connection failures, 429 and
        5xx answers are retried a few times with backoff."""
        extra = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        # Encoded once, as bytes: the transport sends them as they are.
        data = None if body is None else json.dumps(body).encode()
        delays = (*backoff.REQUEST, None) if retry else (None,)
        attempt, relogged = 0, False
        while True:
            delay = delays[attempt]
            try:
                async with self._using() as connection:
                    headers = {**connection.headers, **extra}
                    reply = await connection.transport.call(
                        Request(method, path, params, headers, data, timeout)
                    )
                    if reply.status == 401 and not relogged:
                        # Retired while in use, so that it is closed once its
                        # last user (this call, or a watch) is done with it.
                        self._retire(connection)
            except NoAnswer as err:
                if delay is None:
                    raise ApiError(0, "Unreachable", str(err)) from err
                logger.debug(
                    "API request %s %s failed (attempt %d): %s", method, path, attempt, err
                )
                await self._clock.sleep(delay)
                attempt += 1
                continue
            if reply.status == 401 and not relogged:
                # Made again at once with fresh credentials (a rotated token):
                # that is no retry, and a call that is not retried gets it too.
                relogged = True
                continue
            if reply.status in _RETRIABLE_STATUSES and delay is not None:
                await self._clock.sleep(_retry_after(reply.retry_after, delay))
                attempt += 1
                continue
            if reply.status >= 400:
                raise api_error(reply.status, reply.body)
            return json.loads(reply.body) if reply.body else {}

    async def get(
        self,
        path: str,
        *,
        retry: bool = True,
        timeout: float = _REQUEST_TIMEOUT,
        cached: bool = False,
    ) -> Object | None:
        """The object, or None when it does not exist. `cached`: from the API
        server's watch cache (resourceVersion=0), which spares etcd a read
        and may lag the latest write by milliseconds, as informers do."""
        params = {"resourceVersion": "0"} if cached else None
        try:
            return await self.request("GET", path, params=params, retry=retry, timeout=timeout)
        except ApiError as err:
            if err.not_found:
                return None
            raise

    async def create(
        self, path: str, body: Object, *, retry: bool = True, timeout: float = _REQUEST_TIMEOUT
    ) -> Object:
        return await self.request("POST", path, body=body, retry=retry, timeout=timeout)

    async def replace(
        self, path: str, body: Object, *, retry: bool = True, timeout: float = _REQUEST_TIMEOUT
    ) -> Object:
        """PUT: fails with 409 when body's resourceVersion is not current."""
        return await self.request("PUT", path, body=body, retry=retry, timeout=timeout)

    async def delete(self, path: str) -> None:
        """DELETE; an object already gone is fine."""
        try:
            await self.request("DELETE", path)
        except ApiError as err:
            if not err.not_found:
                raise

    async def merge_patch(self, path: str, patch: Object) -> Object:
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def list(
        self, path: str, params: Mapping[str, str] | None = None, *, metadata_only: bool = False
    ) -> tuple[list[Object], str]:
        """Every item, and the resourceVersion to watch from."""
        items: list[Object] = []
        pages = self.list_pages(path, params, metadata_only=metadata_only)
        async for page in pages:
            items.extend(page)
        return items, pages.resource_version

    def list_pages(
        self, path: str, params: Mapping[str, str] | None = None, *, metadata_only: bool = False
    ) -> Pages:
        """The items in pages, so that a large collection is never held in
        memory at once; `resource_version` is set after the last page.
        `metadata_only`: each item is its apiVersion, kind and metadata."""
        return Pages(self, path, dict(params or {}), metadata_only=metadata_only)

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        *,
        metadata_only: bool = False,
    ) -> AsyncIterator[tuple[str, Object]]:
        """Events after `resource_version`, until the server ends the stream.
        Raises Gone when the version is too old to continue from.
        `metadata_only`: each object is its apiVersion, kind and metadata."""
        query = {
            **(params or {}),
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(_WATCH_TIMEOUT_SECONDS),
        }
        async with self._using() as connection:
            accept = {"Accept": _METADATA_WATCH} if metadata_only else {}
            request = Request(
                "GET", path, query, {**connection.headers, **accept}, None, WATCH_INACTIVITY_SECONDS
            )
            async with connection.transport.watch(request) as response:
                if response.status == 401:
                    self._retire(connection)
                if response.status >= 400:
                    raise api_error(response.status, await response.read())
                lines = WatchLines(MAX_WATCH_EVENT_BYTES, path)
                try:
                    async for chunk in response.chunks():
                        for line in lines.feed(chunk):
                            event = json.loads(line)
                            kind, obj = event.get("type", ""), event.get("object") or {}
                            if kind == "ERROR":
                                raise api_error(int(obj.get("code", 500)), json.dumps(obj).encode())
                            yield kind, obj
                except TimeoutError as err:
                    raise Stalled(path) from err

    # --- Connection. ---

    async def _connect(self) -> _Connection:
        if self._connection is not None:
            return self._connection
        async with self._connecting:
            if self._connection is None:
                info = await self._login()
                headers = {"Accept": "application/json", **authorization(info)}
                transport = self._connect_transport(info, self._max_connections)
                self._connection = _Connection(transport, headers)
            return self._connection

    @asynccontextmanager
    async def _using(self) -> AsyncIterator[_Connection]:
        """The current connection, kept open while the caller uses it."""
        connection = await self._connect()
        connection.users += 1
        try:
            yield connection
        finally:
            connection.users -= 1
            if connection.retired and connection.users == 0 and connection in self._retired:
                self._retired.remove(connection)
                await connection.transport.close()

    def _retire(self, stale: _Connection) -> None:
        """The next request logs in again (the credentials were refused: a
        rotated token). The watches `stale` carries go on until they end:
        the API server checked the credentials when each began, and closing
        their connections under them would leave their reads waiting for
        good (aiohttp neither ends such a read nor times it out)."""
        if self._connection is stale:
            self._connection = None
            stale.retired = True
            self._retired.append(stale)


def _retry_after(header: str | None, default: float) -> float:
    try:
        return min(float(header if header is not None else default), 10.0)
    except ValueError:
        return default
