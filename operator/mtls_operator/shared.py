"""What the controllers that sign and publish share: the runtime (API
client, cache, work queue, clock, metrics), the CAs, and the identity
policy's view of namespaces and MtlsPolicies. Made once by the operator."""

from __future__ import annotations

from dataclasses import dataclass

from mtls_operator.authorities.store import AuthorityStore
from mtls_operator.runtime.core import Runtime
from mtls_operator.tenancy.store import Tenancy


@dataclass(frozen=True)
class SharedParts:
    runtime: Runtime
    authorities: AuthorityStore
    tenancy: Tenancy
