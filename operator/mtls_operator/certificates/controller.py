"""The MtlsCertificate controller: MtlsCertificate in, Secret out.

One reconciliation of one certificate: gather (no API writes), decide (pure,
`policy.certificate.decide`), act (write the Secret, the status, one Event).
Every outcome schedules the next look at the object.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from mtls_operator.api.managed_secret import SecretFacts
from mtls_operator.api.resources import certificates_path
from mtls_operator.api.revocations import crl_distribution_point
from mtls_operator.api.spec import CertificateSpec, InvalidSpec
from mtls_operator.api.status import Reason, ready_condition
from mtls_operator.authorities.store import CAMissing, CARef, CAUnusable
from mtls_operator.certificates.foreign_secrets import ForeignSecrets
from mtls_operator.certificates.gather import Gatherer
from mtls_operator.certificates.keystore_passwords import KeystorePasswords
from mtls_operator.certificates.revoke_requests import RevokeRequests
from mtls_operator.certificates.secret_writer import SecretWriter, Written
from mtls_operator.certificates.spec_secrets import SpecSecrets
from mtls_operator.certificates.status_writer import StatusWriter
from mtls_operator.certificates.store import (
    CertificateRecord,
    Store,
    certificate_record,
    record_version,
)
from mtls_operator.pki import CAProblem, CertificateAuthority, PKIError
from mtls_operator.policy import certificate as policy
from mtls_operator.policy.certificate import (
    NEW_KEY_TRIGGERS,
    RATE_LIMITED_TRIGGERS,
    RENEWAL_TRIGGERS,
    Drift,
)
from mtls_operator.policy.identity import issued_request
from mtls_operator.policy.violation import Violation
from mtls_operator.runtime import backoff
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.errors import one_line
from mtls_operator.runtime.events import NORMAL
from mtls_operator.runtime.kube import ObjectKey
from mtls_operator.runtime.metrics import FAILURE, SUCCESS
from mtls_operator.runtime.rate_limit import TokenBucket, Turns
from mtls_operator.runtime.scheduler import namespace_of
from mtls_operator.shared import SharedController, SharedParts, managed_secrets

logger = logging.getLogger(__name__)

NAME = "certificates"


@dataclass(frozen=True)
class Settings:
    cluster_ca: CARef
    min_duration: datetime.timedelta
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    reissue_rate: float = 20.0
    # --crl-url: the base of the CRL Distribution Point new leaves carry.
    crl_url: str | None = None


class CertificateController(SharedController[Settings]):
    name = NAME

    def __init__(self, shared: SharedParts, settings: Settings) -> None:
        super().__init__(shared, settings, tenant_of=namespace_of)  # in turns by namespace
        runtime = shared.runtime
        cache, namespaces = runtime.cache, settings.namespaces
        self.store = Store(
            cache.group(
                "certificates",
                certificates_path,
                certificate_record,
                namespaces,
                version_of=record_version,
            ),
            managed_secrets(cache, namespaces),
            self._lane.add,
        )
        self._foreign = ForeignSecrets(runtime.kube, self.store)
        self._passwords = KeystorePasswords(runtime.cache, self._lane.add)
        self._named = SpecSecrets(shared.authorities, self._passwords, self._lane.add)
        self._gatherer = Gatherer(self.store, self._foreign, self._passwords, shared)
        # A revocation recorded: re-issue the certificate it was asked for.
        shared.revocations.on_recorded(self._lane.add)
        # A policy or a namespace's labels changed: judge its certificates again.
        shared.tenancy.on_namespace_change(self._namespace_changed)
        self._secrets = SecretWriter(runtime, self.store, self._foreign, self._passwords)
        self._status = StatusWriter(runtime, self.store, self._lane, on_gone=self._gone)
        self._revoke_requests = RevokeRequests(shared.revocations, self._status, runtime.clock)
        # A burst of one: re-issuances are spread evenly, so that no stretch
        # of time sees more than --reissue-rate per second.
        bucket = TokenBucket(settings.reissue_rate, burst=1, clock=runtime.clock)
        self._turns = Turns(bucket, runtime.clock)

    async def start(self) -> None:
        """Look at certificates only once every managed Secret is in, so
        that a restart never mistakes an existing Secret for a missing one."""
        await self.store.secrets.synced()
        logger.info("loaded %d managed Secrets", len(self.store.secrets))
        self.store.follow()

    async def close(self) -> None:
        """Stop the watches of keystore password Secrets."""
        await self._passwords.close()

    async def reconcile(self, key: ObjectKey) -> None:
        record = self.store.certificates.get(key)
        if record is None:
            self._forget(key)
            return
        self._runtime.metrics.observe_reconciliation(record.namespace)
        try:
            await self._reconcile(record)
        except Exception as err:  # one object's failure must not stop the others
            problem = one_line(err, for_users=(PKIError, ApiError))
            if self._lane.failures(key) == 0:
                logger.exception("reconciling %s/%s failed", *key)
            else:
                logger.warning("reconciling %s/%s failed again: %s", *key, problem)
            try:
                await self._status.failed(record, Reason.ISSUANCE_FAILED, problem, retry=True)
            except Exception:  # the API may be down too: just look again later
                logger.exception("recording the failure of %s/%s failed", *key)
                self._lane.schedule(key, self._runtime.clock.time() + backoff.UNWRITTEN_STATUS)

    async def _reconcile(self, record: CertificateRecord) -> None:
        try:
            spec = record.parsed_spec(self._settings.min_duration)
            ca_ref = self._ca_ref(record, spec)
            self._named.use(record.key, spec, ca_ref)
        except InvalidSpec as err:
            await self._status.failed(record, Reason.INVALID_SPEC, str(err), retry=False)
            return
        ca = await self._authorities.state(ca_ref)
        if isinstance(ca, CAMissing):
            # Also looked at again by the CA watch the moment the Secret appears.
            await self._status.failed(record, Reason.CA_NOT_FOUND, ca.message, retry=True)
            return
        if isinstance(ca, CAUnusable):
            # Its watch reports edits; only "not yet valid" changes by itself.
            retry = ca.problem is CAProblem.NOT_YET_VALID
            await self._status.failed(record, Reason.CA_INVALID, ca.message, retry=retry)
            return

        cluster_ca = ca_ref == self._settings.cluster_ca
        if cluster_ca and not self._tenancy.knows(record.namespace):
            # Its labels decide what policies grant it: never judged without.
            self._lane.schedule(record.key, self._runtime.clock.time() + backoff.UNSEEN_NAMESPACE)
            return
        given = await self._gatherer.gather(record, spec, ca_ref, ca, cluster_ca=cluster_ca)
        match policy.decide(given):
            case policy.Revoke(request, leaf):
                await self._revoke_requests.record(record, ca_ref, request, leaf)
            case policy.Blocked(violation):
                await self._status.failed(
                    record, violation.reason, violation.message, retry=violation.retry
                )
            case policy.Issue(trigger):
                if not self._authorities.is_published(ca_ref, ca):
                    # Its roots are not where relying parties read them yet.
                    self._lane.schedule(
                        record.key, self._runtime.clock.time() + backoff.UNPUBLISHED_BUNDLE
                    )
                    return
                await self._issue(record, spec, ca, given, trigger)
            case policy.Repair(secret, items):
                await self._repair(record, spec, ca, secret, items)
            case policy.UpToDate(secret):
                await self._confirm(record, spec, ca, secret)

    async def _issue(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        given: policy.Input,
        trigger: Violation,
    ) -> None:
        if trigger.reason in RATE_LIMITED_TRIGGERS:
            turn = self._turns.wait(record.key)
            if turn is not None:
                self._lane.schedule(record.key, turn)
                return
        else:
            self._turns.forget(record.key)
        started = self._runtime.clock.monotonic()
        try:
            new_key = trigger.reason in NEW_KEY_TRIGGERS
            written = await self._write_secret(record, spec, ca, given, new_key=new_key)
        except Exception:
            self._observe(FAILURE, trigger, started)
            raise
        if written is None:
            self._lane.add(record.key)  # someone else wrote the Secret first
            return
        self._observe(SUCCESS, trigger, started)
        reason = (
            Reason.ISSUED
            if written.revision == 1
            else Reason.RENEWED
            if trigger.reason in RENEWAL_TRIGGERS
            else Reason.REISSUED
        )
        message = f"certificate {written.serial} issued by {ca.subject!r}"
        message += f", valid until {written.not_after}"
        if written.content.issued.clamped_to_ca:
            message += " (cut to the CA's own expiry)"
            await self._status.cut_to_ca(
                record, self._ca_ref(record, spec), spec.request.lifetime, written.not_after
            )
        self._lane.succeeded(record.key)
        if written.facts is not None:
            await self._status.ready(
                record,
                spec,
                written.facts,
                ca,
                reason=reason,
                message=message,
                revision=written.revision,
            )
        await self._status.event(
            record, NORMAL, reason, f"{message}; trigger {trigger.reason}: {trigger.message}"
        )

    async def _write_secret(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        given: policy.Input,
        *,
        new_key: bool,
    ) -> Written | None:
        """What the identity policy grants, signed; never the old key when `new_key`."""
        return await self._secrets.issue(
            record,
            spec,
            issued_request(spec.request, given.identity),
            ca,
            given.secret,
            new_key=new_key,
            crl_distribution_point=crl_distribution_point(
                self._settings.crl_url, *self._ca_ref(record, spec).key
            ),
        )

    async def _repair(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        secret: SecretFacts,
        items: tuple[Drift, ...],
    ) -> None:
        rewrite_data = any(item in policy.DATA_DRIFT for item in items)
        repaired = await self._secrets.repair(record, spec, ca, secret, rewrite_data)
        if repaired is None:
            self._lane.add(record.key)  # changed meanwhile, or gone: look again
            return
        await self._status.event(
            record,
            NORMAL,
            "SecretUpdated",
            f"Secret {spec.secret_name}: updated {', '.join(items)}",
        )
        await self._confirm(record, spec, ca, repaired)

    async def _confirm(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        secret: SecretFacts,
    ) -> None:
        """Nothing to issue: make sure the status tells what the Secret holds
        (after a restart, or when a status write was lost)."""
        current = ready_condition(record.status)
        if current is not None and current.get("status") == "True":
            reason, message = str(current.get("reason")), str(current.get("message"))
        else:
            reason, message = Reason.ISSUED, f"certificate in Secret {spec.secret_name} is valid"
        await self._status.ready(
            record, spec, secret, ca, reason=reason, message=message, revision=secret.revision
        )

    def _ca_ref(self, record: CertificateRecord, spec: CertificateSpec) -> CARef:
        if spec.ca_secret_name:
            return CARef(record.namespace, spec.ca_secret_name)
        return self._settings.cluster_ca

    def _observe(self, result: str, trigger: Violation, started: float) -> None:
        elapsed = self._runtime.clock.monotonic() - started
        self._runtime.metrics.observe_issuance(result, trigger.reason, elapsed)

    def _namespace_changed(self, namespace: str) -> None:
        for key in self.store.keys_in(namespace):
            self._lane.add(key)

    def _gone(self, record: CertificateRecord) -> None:
        self._forget(record.key)
        self.store.certificates.removed(record.key)

    def _forget(self, key: ObjectKey) -> None:
        """A certificate that no longer exists: drop everything kept for it."""
        self._lane.forget(key)
        self._turns.forget(key)
        self._runtime.metrics.forget_certificate(*key)
        self._named.forget(key)
