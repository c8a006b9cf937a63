"""kopf as the watch source: it lists and watches the operator's custom
resources, logs in and handles signals; every event goes straight to the
controller that owns the kind. Only raw-event handlers are registered, so
kopf keeps no state on the objects."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from mtls_operator.runtime.kube import WATCH_INACTIVITY_SECONDS, Login


@dataclass(frozen=True)
class WatchSource:
    group: str
    version: str
    plural: str
    on_event: Callable[[str | None, dict[str, Any]], None]


class RawEventsDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """A diff-base storage for an operator with only raw-event handlers:
    those never read a diff-base, so none is built (kopf would otherwise
    deep-copy every object on every event, a quarter of the event loop's
    time when thousands of objects arrive together)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def build_registry(
    sources: Sequence[WatchSource],
    *,
    login: Login,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    persistence_prefix: str,
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # With only raw-event handlers, kopf writes nothing to the objects
        # (no progress or diff-base annotations, no finalizers): a change
        # costs exactly the controllers' own writes, and deleting an object
        # never waits for the operator. The storages are named under the
        # project's prefix should any handler ever need them.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=persistence_prefix
        )
        settings.persistence.diffbase_storage = RawEventsDiffBaseStorage(
            prefix=persistence_prefix, key="last-handled-configuration"
        )
        # Events are posted by the controllers themselves, one per outcome.
        settings.posting.enabled = False
        # One active replica is chosen by a Lease, not by kopf peering.
        settings.peering.standalone = True
        settings.watching.connect_timeout = 10
        # List thousands of objects in pages, not in one response.
        settings.watching.chunk_size = 500
        settings.watching.server_timeout = 290
        settings.watching.inactivity_timeout = WATCH_INACTIVITY_SECONDS
        # kopf's per-object workers only hand events over, in microseconds:
        # let them exit soon after and cap how many exist, so the number of
        # tasks stays flat however many objects there are. (An idle timeout
        # of exactly 0 never receives a queued event.)
        settings.queueing.worker_limit = 200
        settings.queueing.idle_timeout = 0.05
        await start()

    @kopf.on.login(registry=registry)
    async def log_in(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the runtime's own client.
        return await login()

    for source in sources:
        _register(registry, source)

    @kopf.on.cleanup(registry=registry)
    async def clean_up(**_: Any) -> None:
        await stop()

    return registry


def _register(registry: kopf.OperatorRegistry, source: WatchSource) -> None:
    @kopf.on.event(source.group, source.version, source.plural, registry=registry)
    async def event(event: kopf.RawEvent, **_: Any) -> None:
        source.on_event(event.get("type"), dict(event["object"]))
