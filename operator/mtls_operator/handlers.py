"""The kopf handlers: thin. MtlsCertificate events go to the runtime's
store and work queue; everything else happens in the runtime."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from mtls_operator.kube import default_login
from mtls_operator.resources import GROUP, PLURAL, VERSION
from mtls_operator.runtime import Runtime


class RawEventsDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """A diff-base storage for an operator with only raw-event handlers:
    those never read a diff-base, so none is built (kopf would otherwise
    deep-copy every object on every event, a quarter of the event loop's
    time when thousands of certificates arrive together)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Only raw-event handlers are registered, so kopf keeps no state on
        # the objects (no progress or diff-base annotations, no finalizers):
        # an issuance costs exactly its own writes, and deleting a
        # certificate never waits for the operator. The storages are named
        # under mtls.dev should any handler ever need them.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = RawEventsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )
        # Events are posted by the reconciler itself, one per outcome.
        settings.posting.enabled = False
        # One active replica is chosen by a Lease, not by kopf peering.
        settings.peering.standalone = True
        settings.watching.connect_timeout = 10
        # List thousands of certificates in pages, not in one response.
        settings.watching.chunk_size = 500
        settings.watching.server_timeout = 290
        # kopf's per-object workers only hand events to the store, in
        # microseconds: let them exit soon after and cap how many exist, so
        # the number of tasks stays flat however many certificates there are.
        # (An idle timeout of exactly 0 never receives a queued event.)
        settings.queueing.worker_limit = 200
        settings.queueing.idle_timeout = 0.05
        await runtime.start(default_login)

    @kopf.on.login(registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the runtime's own client.
        return await default_login()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def certificate_event(event: kopf.RawEvent, **_: Any) -> None:
        runtime.on_certificate_event(event.get("type"), dict(event["object"]))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        await runtime.stop()

    return registry
