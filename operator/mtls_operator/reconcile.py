"""One reconciliation of one MtlsCertificate: gather, decide, act.

Gather reads the in-memory store and CA cache (kept current by watches),
and the API only for what is not kept in memory (a Secret another owner
holds); decide is `policy.decide`; act writes at most the Secret, the status
and one Event, reading what it needs to (the previous key when it is kept, a
keystore password). Every outcome schedules the next look at the object.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

from mtls_operator import policy
from mtls_operator.cas import CAMissing, CARef, CAStore, CAUnusable
from mtls_operator.events import NORMAL, WARNING, event_body
from mtls_operator.issuance import SecretContent, issue_secret_content, repaired_data
from mtls_operator.kube import (
    ApiError,
    Kube,
    Object,
    certificates_path,
    events_path,
    secrets_path,
)
from mtls_operator.metrics import CertificateGauges, Metrics
from mtls_operator.pki import CAProblem, CertificateAuthority, PKIError
from mtls_operator.scheduler import Scheduler, TokenBucket
from mtls_operator.secrets import (
    TLS_CRT,
    TLS_KEY,
    KnownKeyPair,
    SecretFacts,
    decode_data,
    issuance_record,
    issued_leaf_facts,
    new_secret,
    read_secret,
    secret_patch,
)
from mtls_operator.spec import CertificateSpec, InvalidSpec, RotationPolicy
from mtls_operator.status import (
    EXPIRED,
    ISSUED,
    REISSUED,
    RENEWED,
    failed_status,
    ready_condition,
    ready_status,
    same_status,
)
from mtls_operator.store import CertificateRecord, Key, Store

logger = logging.getLogger(__name__)

# Re-issuances that may wait their turn: a CA swap or a wave of renewals
# must not rewrite thousands of Secrets in the same second. (An expired
# certificate never waits.)
RATE_LIMITED_TRIGGERS = frozenset({policy.ISSUER_CHANGED, policy.RENEWAL_DUE})
RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass(frozen=True)
class Settings:
    cluster_ca: CARef
    min_duration: datetime.timedelta


class Reconciler:
    def __init__(
        self,
        *,
        kube: Kube,
        store: Store,
        cas: CAStore,
        scheduler: Scheduler[Key],
        limiter: TokenBucket,
        executor: Executor,
        metrics: Metrics,
        settings: Settings,
        clock: Callable[[], datetime.datetime],
    ) -> None:
        self._kube = kube
        self._store = store
        self._cas = cas
        self._scheduler = scheduler
        self._limiter = limiter
        self._executor = executor
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._certificates_by_ca: dict[CARef, set[Key]] = {}
        self._ca_of: dict[Key, CARef] = {}
        self._foreign_secrets: dict[Key, SecretFacts] = {}
        self._turns: dict[Key, float] = {}  # granted re-issuance turns (rate limit)

    def certificates_of(self, ca: CARef) -> set[Key]:
        return set(self._certificates_by_ca.get(ca, ()))

    async def reconcile(self, key: Key) -> None:
        record = self._store.certificates.get(key)
        if record is None:
            self._forget(key)
            return
        try:
            await self._reconcile(record)
        except Exception as err:  # one object's failure must not stop the others
            if record.failures == 0:
                logger.exception("reconciling %s/%s failed", *key)
            else:
                logger.warning("reconciling %s/%s failed again: %s", *key, _one_line(err))
            try:
                await self._fail(record, policy.ISSUANCE_FAILED, _one_line(err), retry=True)
            except Exception:  # the API may be down too: just look again later
                logger.exception("recording the failure of %s/%s failed", *key)
                self._scheduler.schedule(key, time.time() + 30.0)

    async def _reconcile(self, record: CertificateRecord) -> None:
        # Gather.
        try:
            spec = record.parsed_spec(self._settings.min_duration)
        except InvalidSpec as err:
            await self._fail(record, policy.INVALID_SPEC, str(err), retry=False)
            return
        ca_ref = (
            CARef(record.namespace, spec.ca_secret_name)
            if spec.ca_secret_name
            else self._settings.cluster_ca
        )
        self._track_ca(record.key, ca_ref)
        ca = await self._cas.get(ca_ref)
        if isinstance(ca, CAMissing):
            # Also retried by the CA watch the moment the Secret appears.
            await self._fail(record, policy.CA_NOT_FOUND, ca.message, retry=True)
            return
        if isinstance(ca, CAUnusable):
            # Its watch reports edits; only "not yet valid" changes by itself.
            await self._fail(
                record, policy.CA_INVALID, ca.message, retry=ca.problem is CAProblem.NOT_YET_VALID
            )
            return
        self._metrics.set_ca(ca_ref.namespace, ca_ref.name, ca.not_after.timestamp())
        secret = self._store.secrets.get(
            (record.namespace, spec.secret_name)
        ) or await self._recheck_foreign_secret(record.namespace, spec.secret_name)
        given = policy.Input(
            certificate=record.ref,
            spec=spec,
            secret=secret,
            ca=ca,
            now=self._clock(),
            older_claimant=self._store.older_claimant(record),
        )

        # Decide, then act.
        match policy.decide(given):
            case policy.Blocked(violation):
                # A foreign Secret is not watched: look again later whether it is gone.
                foreign = secret is not None and not secret.managed
                await self._fail(record, violation.reason, violation.message, retry=foreign)
            case policy.Issue(trigger):
                await self._issue(record, spec, ca, secret, trigger)
            case policy.Repair(current, items):
                await self._repair(record, spec, ca, current, items)
            case policy.UpToDate(current):
                await self._confirm(record, spec, current, ca)

    # --- Acting. ---

    async def _issue(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        secret: SecretFacts | None,
        trigger: policy.Violation,
    ) -> None:
        turn = self._turns.pop(record.key, None)
        if trigger.reason in RATE_LIMITED_TRIGGERS:
            if turn is None:
                wait = self._limiter.reserve()
                # The reservation is this certificate's turn: it is kept,
                # not queued for again, when the certificate comes back.
                turn = time.time() + wait if wait > 0 else None
            if turn is not None and time.time() < turn:
                self._turns[record.key] = turn
                self._scheduler.schedule(record.key, turn)
                return
        started = time.monotonic()
        try:
            written = await self._sign_and_write(record, spec, ca, secret)
        except Exception:
            self._metrics.observe_issuance("failure", trigger.reason, time.monotonic() - started)
            raise
        if written is None:
            return  # someone else wrote the Secret first; looked at again
        content, body, record_annotations, revision = written
        known = KnownKeyPair(
            content.data[TLS_CRT],
            content.data[TLS_KEY],
            issued_leaf_facts(content.issued.certificate, ca.subject, ca.key_identifier),
        )
        facts = self._store.upsert_secret(body, known, notify=False) or self._store.secrets.get(
            (record.namespace, spec.secret_name)
        )
        self._metrics.observe_issuance("success", trigger.reason, time.monotonic() - started)
        reason = (
            ISSUED
            if revision == 1
            else RENEWED
            if trigger.reason in policy.RENEWAL_TRIGGERS
            else REISSUED
        )
        serial = record_annotations["mtls.dev/serial"]
        not_after = record_annotations["mtls.dev/not-after"]
        message = f"certificate {serial} issued by {ca.subject!r}, valid until {not_after}"
        if content.issued.clamped_to_ca:
            message += " (cut to the CA's own expiry)"
        record.failures = 0
        if facts is not None:
            await self._write_ready_status(
                record,
                spec,
                facts,
                ca=ca,
                reason=reason,
                message=message,
                revision=revision,
            )
        await self._event(
            record, NORMAL, reason, f"{message}; trigger {trigger.reason}: {trigger.message}"
        )

    async def _sign_and_write(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        secret: SecretFacts | None,
    ) -> tuple[SecretContent, Object, dict[str, str], int] | None:
        """Generate the key (or keep it), sign, and write the Secret: the
        content, the Secret as written, its record and revision; None when
        a concurrent write won (the certificate is looked at again)."""
        previous_key = None
        if secret is not None and spec.private_key.rotation is RotationPolicy.NEVER:
            previous_key = await self._secret_data(record.namespace, spec.secret_name, TLS_KEY)
        password = await self._pkcs12_password(record, spec)
        now = self._clock()
        content = await asyncio.get_running_loop().run_in_executor(
            self._executor,
            lambda: issue_secret_content(
                spec, ca, now, previous_key_pem=previous_key, pkcs12_password=password
            ),
        )
        revision = (
            max(secret.revision if secret else 0, int(record.status.get("revision") or 0)) + 1
        )
        record_annotations = issuance_record(
            spec,
            content.issued,
            ca,
            issued_at=now,
            revision=revision,
            renewal_request=record.ref.renewal_request,
        )
        try:
            if secret is None:
                written = await self._kube.create(
                    secrets_path(record.namespace),
                    new_secret(record.ref, spec, content.data, record_annotations),
                )
            else:
                patch = secret_patch(
                    secret,
                    record.ref,
                    spec,
                    data=content.data,
                    record=record_annotations,
                    expected_keys=policy.expected_data_keys(spec),
                )
                written = await self._kube.merge_patch(
                    secrets_path(record.namespace, spec.secret_name), patch
                )
        except ApiError as err:
            if not err.conflict:
                raise
            await self._refresh_secret(record.namespace, spec.secret_name)
            self._scheduler.schedule(record.key, time.time())
            return None
        return content, written, record_annotations, revision

    async def _repair(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        secret: SecretFacts,
        items: tuple[str, ...],
    ) -> None:
        data: dict[str, bytes] = {}
        if policy.TRUST_BUNDLE_DRIFT in items or policy.OUTPUTS_DRIFT in items:
            current = await self._kube.get(secrets_path(record.namespace, spec.secret_name))
            if current is None:
                self._scheduler.schedule(record.key, time.time())
                return
            password = await self._pkcs12_password(record, spec)
            current_data = decode_data(current.get("data"))
            data = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: repaired_data(spec, ca, current_data, password)
            )
        patch = secret_patch(
            secret,
            record.ref,
            spec,
            data=data,
            record=None,
            expected_keys=policy.expected_data_keys(spec),
        )
        try:
            written = await self._kube.merge_patch(
                secrets_path(record.namespace, spec.secret_name), patch
            )
        except ApiError as err:
            if err.conflict:
                await self._refresh_secret(record.namespace, spec.secret_name)
                self._scheduler.schedule(record.key, time.time())
                return
            raise
        facts = self._store.upsert_secret(written, notify=False) or secret
        await self._event(
            record,
            NORMAL,
            "SecretUpdated",
            f"Secret {spec.secret_name}: updated {', '.join(items)}",
        )
        await self._confirm(record, spec, facts, ca)

    async def _confirm(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        secret: SecretFacts,
        ca: CertificateAuthority,
    ) -> None:
        """Nothing to issue: make sure the status tells what the Secret holds
        (after a restart, or when a status write was lost)."""
        current = ready_condition(record.status)
        if current is not None and current.get("status") == "True":
            reason, message = str(current.get("reason")), str(current.get("message"))
        else:
            reason, message = ISSUED, f"certificate in Secret {spec.secret_name} is valid"
        await self._write_ready_status(
            record,
            spec,
            secret,
            ca=ca,
            reason=reason,
            message=message,
            revision=secret.revision,
        )

    async def _write_ready_status(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        secret: SecretFacts,
        *,
        ca: CertificateAuthority,
        reason: str,
        message: str,
        revision: int,
    ) -> None:
        if secret.leaf is None:
            return
        issued_at = policy.issued_at(secret) or secret.leaf.not_before
        renewal = policy.renewal_time(
            spec, issued_at, secret.leaf.not_after, record.uid, ca.not_after
        )
        status = ready_status(
            record.status,
            generation=record.generation,
            reason=reason,
            message=message,
            leaf=secret.leaf,
            renewal=renewal,
            issuer=ca.subject,
            revision=revision,
            now=self._clock(),
        )
        await self._patch_status(record, status)
        self._scheduler.schedule(record.key, renewal.timestamp())
        self._metrics.set_certificate(
            record.namespace,
            record.name,
            CertificateGauges(
                spec.secret_name, secret.leaf.not_after.timestamp(), renewal.timestamp(), True
            ),
        )

    async def _fail(
        self, record: CertificateRecord, reason: str, message: str, *, retry: bool
    ) -> None:
        secret = self._store.secrets.get((record.namespace, record.secret_name or ""))
        leaf = secret.leaf if secret is not None and secret.managed else None
        now = self._clock()
        if reason == policy.ISSUANCE_FAILED and leaf is not None and now >= leaf.not_after:
            reason, message = (
                EXPIRED,
                f"the certificate expired at {leaf.not_after.isoformat()}; {message}",
            )
        previous = ready_condition(record.status)
        is_new = (
            previous is None
            or previous.get("status") != "False"
            or (previous.get("reason"), previous.get("message")) != (reason, message)
        )
        attempted = reason in (policy.ISSUANCE_FAILED, EXPIRED)
        status = failed_status(
            record.status,
            generation=record.generation,
            reason=reason,
            message=message,
            now=now,
            attempt_failed=attempted,
        )
        # Counted before the status write, whose response replaces the record
        # in the store (and carries the count over).
        delay = RETRY_DELAYS[min(record.failures, len(RETRY_DELAYS) - 1)]
        if retry:
            record.failures += 1
        if is_new or attempted:
            await self._patch_status(record, status)
        if is_new:
            await self._event(record, WARNING, reason, message)
        if retry:
            self._scheduler.schedule(record.key, time.time() + delay)
        else:
            self._scheduler.cancel(record.key)
        self._metrics.set_certificate(
            record.namespace,
            record.name,
            CertificateGauges(
                record.secret_name or "",
                leaf.not_after.timestamp() if leaf else None,
                None,
                False,
            ),
        )

    # --- Writes and reads. ---

    async def _patch_status(self, record: CertificateRecord, status: dict[str, object]) -> None:
        if same_status(record.status, status):
            return
        try:
            written = await self._kube.merge_patch(
                certificates_path(record.namespace, record.name, "status"), {"status": status}
            )
        except ApiError as err:
            if err.not_found:
                # Gone, though no DELETED event said so (kopf does not report
                # deletions that happened while its watch was re-listing).
                self._forget(record.key)
                self._store.remove_certificate(
                    {
                        "metadata": {
                            "namespace": record.namespace,
                            "name": record.name,
                            "uid": record.uid,
                        }
                    }
                )
                return
            raise
        self._store.upsert_certificate(written, notify=False)

    async def _event(self, record: CertificateRecord, kind: str, reason: str, message: str) -> None:
        body = event_body(
            namespace=record.namespace,
            name=record.name,
            uid=record.uid,
            event_type=kind,
            reason=reason,
            message=message,
            now=self._clock(),
        )
        try:
            await self._kube.create(events_path(record.namespace), body)
        except ApiError as err:  # an event is worth less than the work it reports
            logger.warning(
                "could not record event %s for %s/%s: %s",
                reason,
                record.namespace,
                record.name,
                err,
            )

    async def _refresh_secret(self, namespace: str, name: str) -> None:
        """Read a Secret after a write conflict. Only managed Secrets enter
        the store (it mirrors the label-selected watch); another Secret of
        that name is remembered aside, to be re-checked on the next look."""
        body = await self._kube.get(secrets_path(namespace, name))
        if body is None:
            self._store.secrets.pop((namespace, name), None)
            self._foreign_secrets.pop((namespace, name), None)
            return
        facts = read_secret(body)
        if facts.managed:
            self._foreign_secrets.pop((namespace, name), None)
            self._store.upsert_secret(body)
        else:
            self._foreign_secrets[(namespace, name)] = facts

    async def _recheck_foreign_secret(self, namespace: str, name: str) -> SecretFacts | None:
        if (namespace, name) not in self._foreign_secrets:
            return None
        await self._refresh_secret(namespace, name)
        return self._store.secrets.get((namespace, name)) or self._foreign_secrets.get(
            (namespace, name)
        )

    async def _secret_data(self, namespace: str, name: str, key: str) -> bytes | None:
        body = await self._kube.get(secrets_path(namespace, name))
        return decode_data((body or {}).get("data")).get(key) if body else None

    async def _pkcs12_password(
        self, record: CertificateRecord, spec: CertificateSpec
    ) -> bytes | None:
        ref = spec.pkcs12_password
        if ref is None:
            return None
        value = await self._secret_data(record.namespace, ref.name, ref.key)
        if not value:
            raise PKIError(
                f"keystore password Secret {record.namespace}/{ref.name} has no key {ref.key!r}"
            )
        return value.rstrip(b"\r\n")

    def _forget(self, key: Key) -> None:
        """A certificate that no longer exists: drop everything kept for it."""
        self._scheduler.cancel(key)
        self._turns.pop(key, None)
        self._metrics.forget_certificate(*key)
        previous = self._ca_of.pop(key, None)
        if previous is not None:
            self._release_ca(key, previous)

    def _track_ca(self, key: Key, ca: CARef) -> None:
        previous = self._ca_of.get(key)
        if previous == ca:
            return
        self._ca_of[key] = ca
        self._certificates_by_ca.setdefault(ca, set()).add(key)
        if previous is not None:
            self._release_ca(key, previous)

    def _release_ca(self, key: Key, ca: CARef) -> None:
        keys = self._certificates_by_ca.get(ca)
        if keys is None:
            return
        keys.discard(key)
        if not keys:
            # No certificate uses that CA any more: stop watching it.
            del self._certificates_by_ca[ca]
            self._cas.forget(ca)


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return (
        f"{type(err).__name__}: {text}"[:500]
        if not isinstance(err, PKIError | ApiError)
        else text[:500]
    )
