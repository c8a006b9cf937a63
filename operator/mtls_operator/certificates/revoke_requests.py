"""Acting on a tenant's revocation of the certificate its Secret holds:
record it where it outlives the operator, and say so. The record's change
brings the certificate back to be re-issued with a new key."""

from __future__ import annotations

from dataclasses import dataclass

from mtls_operator.api.managed_secret import LeafFacts
from mtls_operator.api.revocations import RevokeRequest, revoked_now
from mtls_operator.api.status import Reason
from mtls_operator.authorities.store import CARef
from mtls_operator.certificates.status_writer import StatusWriter
from mtls_operator.certificates.store import CertificateRecord
from mtls_operator.policy.certificate import Trigger
from mtls_operator.revocations.store import ForeignStoreError, Revocations
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.events import WARNING


@dataclass(frozen=True)
class RevokeRequests:
    revocations: Revocations
    status: StatusWriter
    clock: Clock

    async def record(
        self, record: CertificateRecord, ca_ref: CARef, request: RevokeRequest, leaf: LeafFacts
    ) -> None:
        entry = revoked_now(
            request.serial_number,
            request.reason,
            leaf.not_after,
            self.clock.now(),
            certificate=f"{record.namespace}/{record.name}",
        )
        try:
            await self.revocations.record(ca_ref, entry)
        except ForeignStoreError as err:
            await self.status.failed(record, Reason.SECRET_CONFLICT, str(err), retry=True)
            return
        await self.status.event(
            record,
            WARNING,
            Trigger.REVOKED,
            f"certificate {leaf.serial_number} revoked ({request.reason.value}); "
            "a new key is issued",
        )
