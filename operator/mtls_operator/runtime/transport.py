"""How the API client reaches the API server: one call, or one watch
stream, at a time. The client's retries, re-logins, paging and watch
decoding sit above this seam; the HTTP library sits below it, and tests
put a server of their own in its place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

import kopf


class NoAnswer(Exception):
    """The API server gave no answer: refused or dropped connection, or a
    timeout. The message names the underlying error."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: Mapping[str, str] | None
    headers: Mapping[str, str]
    body: bytes | None
    # A call's longest time in all; a watch's longest silence.
    timeout: float


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    # The Retry-After header of a 429 or 503, if the server sent one.
    retry_after: str | None = None


class WatchReply(Protocol):
    @property
    def status(self) -> int: ...

    async def read(self) -> bytes:
        """The whole body, for a refusal."""

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, cut anyhow. Raises TimeoutError when
        nothing arrived for the request's timeout."""


class Transport(Protocol):
    async def call(self, request: Request) -> Reply:
        """One request, its answer read whole. Raises NoAnswer."""

    def watch(self, request: Request) -> AbstractAsyncContextManager[WatchReply]:
        """A long-running GET; it has connections of its own, so that
        however many watches run, calls always find a connection."""

    async def close(self) -> None: ...


# A transport to the server that a login names, with at most that many
# connections for calls.
Connect = Callable[[kopf.ConnectionInfo, int], Transport]
