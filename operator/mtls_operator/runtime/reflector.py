"""A local, always-current view of a server-side filtered collection:
list, then watch from the listed version, and list again when the watch
cannot continue (410 Gone) or the connection drops."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from mtls_operator.runtime import backoff
from mtls_operator.runtime.api_errors import ApiError, Gone
from mtls_operator.runtime.clock import SYSTEM_CLOCK, Clock
from mtls_operator.runtime.errors import FIX_FOR_STATUS
from mtls_operator.runtime.kube import WATCH_INACTIVITY_SECONDS, Kube, Object, Stalled
from mtls_operator.runtime.watch_lines import WatchEventTooLarge

logger = logging.getLogger(__name__)

# A refusal seen this many times in a row (seconds apart) is a problem that
# waits for someone to act; fewer is an API server still starting (its RBAC
# caches fill after it answers).
REFUSALS_FOR_A_PROBLEM = 3


class PagedSink(Protocol):
    """What a reflector feeds: the changes its watch sees, and each
    (re-)list page by page, so that thousands of objects are never all in
    memory at once."""

    def apply(self, event_type: str, obj: Object) -> None:
        """One change: ADDED, MODIFIED or DELETED."""

    def begin_relist(self) -> None: ...

    def add_page(self, items: list[Object]) -> None: ...

    def end_relist(self, resource_version: str) -> None:
        """Drop what no page contained and was not written after the list's
        `resource_version` ("": drop all of it)."""


class Reflector:
    def __init__(
        self,
        kube: Kube,
        path: str,
        sink: PagedSink,
        params: Mapping[str, str] | None = None,
        *,
        absent_is_empty: bool = False,
        metadata_only: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """`absent_is_empty`: a resource the API server does not serve (its
        CRD is not installed) reads as an empty collection, checked again
        every half minute, instead of a failure. `metadata_only`: the sink
        sees each object's metadata alone."""
        self._kube = kube
        self._path = path
        self._params = dict(params or {})
        self._sink = sink
        self._absent_is_empty = absent_is_empty
        self._metadata_only = metadata_only
        self._clock = clock
        self.synced = asyncio.Event()
        # True while the API server does not serve the resource (absent_is_empty).
        self.absent = False
        # Why this watch cannot work until someone acts (RBAC, a CRD), if so.
        self.problem: str | None = None
        # The last failure, until a list works again: what a reader waiting
        # for the first list is told.
        self.last_error: str | None = None
        self._refusals = 0  # in a row, since the last list that worked

    async def run(self) -> None:
        failures = 0
        resource_version = ""
        while True:
            try:
                if not resource_version:
                    resource_version = await self._relist()
                    self.absent = False
                    self._solved()
                    self.synced.set()
                async for event_type, obj in self._kube.watch(
                    self._path, resource_version, self._params, metadata_only=self._metadata_only
                ):
                    failures = 0
                    resource_version = (obj.get("metadata") or {}).get(
                        "resourceVersion", resource_version
                    )
                    if event_type != "BOOKMARK":
                        self._sink.apply(event_type, obj)
            except Gone:
                resource_version = ""
            except WatchEventTooLarge as err:
                # Opened again from the same version, the watch would send the
                # same event; a list reads whole pages, and gets past it.
                resource_version = ""
                failures = await self._failed(err, failures)
            except ApiError as err:
                if not (err.not_found and self._absent_is_empty):
                    if err.status in FIX_FOR_STATUS:
                        resource_version = ""  # the list says when it is fixed
                    failures = await self._failed(err, failures)
                    continue
                if not self.absent:
                    logger.warning("%s is not served: read as empty until it is", self._path)
                self.absent = True
                self._empty()
                self.synced.set()
                resource_version = ""
                await self._clock.sleep(backoff.WATCH[-1])
            except Stalled:
                # Opened again at once, from where it was: nothing is missed.
                logger.warning(
                    "watch of %s delivered nothing for %.0f s: opening it again",
                    self._path,
                    WATCH_INACTIVITY_SECONDS,
                )
            except Exception as err:  # a watch outlives any failure; only cancellation ends it
                failures = await self._failed(err, failures)

    async def _failed(self, err: Exception, failures: int) -> int:
        delay = backoff.delay(backoff.WATCH, failures)
        message = self.last_error = str(err) or type(err).__name__
        fix = FIX_FOR_STATUS.get(err.status) if isinstance(err, ApiError) else None
        self._refusals = self._refusals + 1 if fix else 0
        if self._refusals < REFUSALS_FOR_A_PROBLEM:
            logger.warning("watch of %s failed (%s); retrying in %.1fs", self._path, message, delay)
        else:
            # Logged once when it begins, and shown by /readyz until it ends.
            problem = f"cannot watch {self._path} ({message}): {fix}"
            if problem != self.problem:
                logger.error("%s", problem)
            self.problem = problem
        await self._clock.sleep(delay)
        return failures + 1

    def _solved(self) -> None:
        self._refusals = 0
        self.last_error = None
        if self.problem is not None:
            logger.info("watching %s again", self._path)
            self.problem = None

    def _empty(self) -> None:
        self._sink.begin_relist()
        self._sink.end_relist("")

    async def _relist(self) -> str:
        pages = self._kube.list_pages(self._path, self._params, metadata_only=self._metadata_only)
        self._sink.begin_relist()
        async for page in pages:
            self._sink.add_page(page)
        self._sink.end_relist(pages.resource_version)
        return pages.resource_version
