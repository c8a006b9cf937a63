"""kopf as the operator's lifecycle: it logs in, runs the start-up and
clean-up handlers in order, and handles signals. It watches nothing: every
collection is read by the runtime's own reflectors, so kopf keeps no state
on the objects and writes nothing to them (no progress or diff-base
annotations, no finalizers), and deleting an object never waits for the
operator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import kopf

from mtls_operator.runtime.login import Login


def build_registry(
    *,
    login: Login,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Events are posted by the controllers themselves, one per outcome.
        settings.posting.enabled = False
        # One active replica is chosen by a Lease, not by kopf peering.
        settings.peering.standalone = True
        await start()

    @kopf.on.login(registry=registry)
    async def log_in(**_: Any) -> kopf.ConnectionInfo:
        # The same credentials as the runtime's own client.
        return await login()

    @kopf.on.cleanup(registry=registry)
    async def clean_up(**_: Any) -> None:
        await stop()

    return registry
