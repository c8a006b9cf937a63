"""What the controllers that sign and publish share: the runtime (API
client, cache, work queue, clock, metrics), the CAs and their revocations,
and the identity policy's view of namespaces and MtlsPolicies. Made once
by the operator."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mtls_operator.api.managed_secret import MANAGED_SELECTOR, SecretFacts, read_secret
from mtls_operator.api.paths import secrets_path
from mtls_operator.authorities.store import AuthorityStore
from mtls_operator.revocations.store import Revocations
from mtls_operator.runtime.cache import InformerGroup, SharedCache
from mtls_operator.runtime.core import Runtime
from mtls_operator.tenancy.store import Tenancy


def _secret_version(facts: SecretFacts) -> str:
    return facts.resource_version


def managed_secrets(cache: SharedCache, namespaces: tuple[str, ...]) -> InformerGroup[SecretFacts]:
    """The Secrets the operator manages (by label), as its decisions read
    them, in `namespaces` (empty: all): declared here once, so that every
    controller that asks shares the same informers."""
    return cache.group(
        "secrets",
        secrets_path,
        read_secret,
        namespaces,
        MANAGED_SELECTOR,
        version_of=_secret_version,
    )


@dataclass(frozen=True)
class SharedParts:
    runtime: Runtime
    authorities: AuthorityStore
    tenancy: Tenancy
    revocations: Revocations


S = TypeVar("S")


class SharedController(Generic[S]):
    """A controller built on the shared parts: it keeps them and its
    settings `S`, and takes its lane of the work queue under its `name`."""

    name: str

    def __init__(
        self,
        shared: SharedParts,
        settings: S,
        *,
        tenant_of: Callable[[Any], Hashable] | None = None,
        urgent: bool = False,
    ) -> None:
        self._runtime = shared.runtime
        self._authorities = shared.authorities
        self._tenancy = shared.tenancy
        self._revocations = shared.revocations
        self._settings = settings
        self._lane = shared.runtime.lane(self.name, tenant_of=tenant_of, urgent=urgent)
