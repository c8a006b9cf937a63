"""Act, on the MtlsCertificate: its status, the Events about it, its
metrics, and when to look at it next. Every outcome of a reconciliation
ends here."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.durations import format_duration
from mtls_operator.api.managed_secret import SecretFacts
from mtls_operator.api.resources import certificates_path
from mtls_operator.api.spec import CertificateSpec
from mtls_operator.api.status import (
    Reason,
    failed_status,
    ready_condition,
    ready_status,
    same_status,
)
from mtls_operator.authorities.store import CARef
from mtls_operator.certificates.store import CertificateRecord, Store, after_write
from mtls_operator.pki import CertificateAuthority
from mtls_operator.policy.renewal import secret_renewal_time
from mtls_operator.runtime import backoff
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.events import WARNING
from mtls_operator.runtime.metrics import CertificateGauges
from mtls_operator.runtime.scheduler import Lane

logger = logging.getLogger(__name__)

# A failure that cost an issuance attempt (counted in the status).
_ATTEMPT_REASONS = frozenset({Reason.ISSUANCE_FAILED, Reason.EXPIRED})


@dataclass(frozen=True)
class StatusWriter:
    runtime: Runtime
    store: Store
    lane: Lane[Hashable]
    on_gone: Callable[[CertificateRecord], None]

    async def ready(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        secret: SecretFacts,
        ca: CertificateAuthority,
        *,
        reason: str,
        message: str,
        revision: int,
    ) -> None:
        """Ready=True with the facts of the certificate in `secret`, and the
        next look at its renewal time."""
        renewal = secret_renewal_time(spec, record.uid, secret, ca.not_after)
        if secret.leaf is None or renewal is None:
            return
        status = ready_status(
            record.status,
            generation=record.generation,
            reason=reason,
            message=message,
            leaf=secret.leaf,
            renewal=renewal,
            issuer=ca.subject,
            revision=revision,
            now=self.runtime.clock.now(),
        )
        await self._patch(record, status)
        self.lane.schedule(record.key, renewal.timestamp())
        self.runtime.metrics.set_certificate(
            record.namespace,
            record.name,
            CertificateGauges(
                spec.secret_name, secret.leaf.not_after.timestamp(), renewal.timestamp(), True
            ),
        )

    async def failed(
        self, record: CertificateRecord, reason: str, message: str, *, retry: bool
    ) -> None:
        """Ready=False (written and announced once per distinct failure),
        and a retry with backoff when `retry`."""
        secret = self.store.secrets.get((record.namespace, record.secret_name or ""))
        leaf = secret.leaf if secret is not None and secret.managed else None
        now = self.runtime.clock.now()
        if reason == Reason.ISSUANCE_FAILED and leaf is not None and now >= leaf.not_after:
            reason = Reason.EXPIRED
            message = f"the certificate expired at {leaf.not_after.isoformat()}; {message}"
        previous = ready_condition(record.status)
        is_new = (
            previous is None
            or previous.get("status") != "False"
            or (previous.get("reason"), previous.get("message")) != (reason, message)
        )
        attempted = reason in _ATTEMPT_REASONS
        status = failed_status(
            record.status,
            generation=record.generation,
            reason=reason,
            message=message,
            now=now,
            attempt_failed=attempted,
        )
        if is_new or attempted:
            await self._patch(record, status)
        # The gauges follow the status at once, not after the Event's write.
        self.runtime.metrics.set_certificate(
            record.namespace,
            record.name,
            CertificateGauges(
                record.secret_name or "", leaf.not_after.timestamp() if leaf else None, None, False
            ),
        )
        if is_new:
            await self.runtime.events.record(record.ref.involved_object(), WARNING, reason, message)
        if retry:
            self.lane.retry(record.key, backoff.RECONCILE)
        else:
            self.lane.cancel(record.key)

    async def cut_to_ca(
        self,
        record: CertificateRecord,
        ca: CARef,
        lifetime: datetime.timedelta,
        not_after: str,
    ) -> None:
        """A lifetime shorter than asked for, because the CA expires first:
        a Warning event and a metric, since only rotating the CA helps."""
        self.runtime.metrics.observe_cut_to_ca(*ca.key)
        await self.event(
            record,
            WARNING,
            "CutToCAExpiry",
            f"the certificate lives only until {not_after}, when CA {ca} expires, not the "
            f"{format_duration(lifetime)} asked for: rotate the CA (docs/ca-rotation.md)",
        )

    async def event(self, record: CertificateRecord, kind: str, reason: str, message: str) -> None:
        await self.runtime.events.record(record.ref.involved_object(), kind, reason, message)

    async def _patch(self, record: CertificateRecord, status: Mapping[str, Any]) -> None:
        if same_status(record.status, status):
            return
        try:
            written = await self.runtime.kube.merge_patch(
                certificates_path(record.namespace, record.name, "status"), {"status": status}
            )
        except ApiError as err:
            if err.not_found:
                # Gone before its DELETED event arrived.
                self.on_gone(record)
                return
            raise
        self.store.certificates.wrote(written, after_write(record, written))
