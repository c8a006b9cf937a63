"""The PodCertificateRequest signer: requests of this signer's name in,
one status update out (the chain and its times, or a denial).

The kubelet makes the key on the node, posts a request with a stub PKCS#10
of it, and mounts what the signer returns into the pod; nothing secret ever
reaches the API server or the operator.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.pod_certificates import (
    FAILED,
    PodCertificateRequest,
    issued_status,
    pod_certificate_requests_path,
    read_request,
    refused_status,
)
from mtls_operator.api.revocations import crl_distribution_point
from mtls_operator.api.timestamps import parse_timestamp
from mtls_operator.authorities.store import CARef
from mtls_operator.pki import CertificateAuthority, PKIError, issue_leaf
from mtls_operator.podcertificates.directory import Directory
from mtls_operator.podcertificates.gather import Gatherer
from mtls_operator.policy import pod_request
from mtls_operator.runtime import backoff
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import Change
from mtls_operator.runtime.errors import one_line
from mtls_operator.runtime.kube import ObjectKey
from mtls_operator.runtime.scheduler import namespace_of
from mtls_operator.shared import SharedController, SharedParts

logger = logging.getLogger(__name__)

NAME = "podcertificates"
DEFAULT_SIGNER_NAME = "mtls.dev/pod-identity"
# The CA missing or unusable is waited out (it may be on its way); a request
# still waiting this long after it was made is failed, so that the kubelet
# hears of it (the API server deletes requests after fifteen minutes).
CA_PATIENCE = datetime.timedelta(minutes=5)
CA_UNAVAILABLE = "CAUnavailable"


@dataclass(frozen=True)
class PodSignerSettings:
    cluster_ca: CARef
    signer_name: str = DEFAULT_SIGNER_NAME
    max_duration: datetime.timedelta = datetime.timedelta(hours=24)
    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    # --crl-url: the base of the CRL Distribution Point pod certificates carry.
    crl_url: str | None = None


class PodCertificateController(SharedController[PodSignerSettings]):
    name = NAME

    def __init__(self, shared: SharedParts, settings: PodSignerSettings) -> None:
        # Before the certificates (a request is deleted fifteen minutes after
        # it was made), in turns by namespace.
        super().__init__(shared, settings, tenant_of=namespace_of, urgent=True)
        runtime = shared.runtime
        self._directory = Directory(runtime.cache, settings.namespaces)
        self._gatherer = Gatherer(
            runtime.kube,
            self._directory,
            shared.tenancy,
            runtime.clock,
            max_duration=settings.max_duration,
        )
        # The requests of this signer only (a server-side field selector).
        selector = {"fieldSelector": f"spec.signerName={settings.signer_name}"}
        self.requests = [
            runtime.cache.informer(
                f"podcertificaterequests-{namespace or 'all'}",
                pod_certificate_requests_path(namespace),
                read_request,
                selector,
                absent_is_empty=True,
            )
            for namespace in settings.namespaces or (None,)
        ]
        # The requests to answer: not decided yet, and not answered by us
        # (our answer may not have come back through the watch yet).
        self._pending: set[ObjectKey] = set()
        for requests in self.requests:
            requests.subscribe(self._on_change)

    async def start(self) -> None:
        """Sign with the cluster CA once the requests are listed. The pods,
        nodes and service accounts they name are not waited for: until those
        are listed, what a request claims is read from the API."""
        self._authorities.use(self._settings.cluster_ca, self._ca_changed, NAME)
        for requests in self.requests:
            await requests.synced()

    def _on_change(self, change: Change[PodCertificateRequest]) -> None:
        request = change.new
        if request is None or request.outcome is not None:
            self._forget(change.key)
        elif request.signer_name == self._settings.signer_name:
            self._pending.add(change.key)
            self._lane.add(change.key)

    def _forget(self, key: ObjectKey) -> None:
        self._pending.discard(key)
        self._lane.forget(key)

    def _request(self, key: ObjectKey) -> PodCertificateRequest | None:
        if key not in self._pending:
            return None
        return next((found for r in self.requests if (found := r.get(key)) is not None), None)

    async def reconcile(self, key: ObjectKey) -> None:
        request = self._request(key)
        if request is None:
            return
        started = self._runtime.clock.monotonic()
        ca = await self._authorities.state(self._settings.cluster_ca)
        if not isinstance(ca, CertificateAuthority):
            await self._wait_for_ca(request, ca.message)
            return
        if not self._authorities.is_published(self._settings.cluster_ca, ca):
            # Its roots are not where pods read them yet.
            self._lane.schedule(key, self._runtime.clock.time() + backoff.UNPUBLISHED_BUNDLE)
            return
        if not self._tenancy.knows(request.namespace):
            # Its labels decide what policies grant it: never judged without.
            self._lane.schedule(key, self._runtime.clock.time() + backoff.UNSEEN_NAMESPACE)
            return
        try:
            given = await self._gatherer.gather(request, ca)
            decision = pod_request.decide(given)
            if isinstance(decision, pod_request.Sign):
                status, outcome, reason = await self._sign(ca, decision), "Issued", "Issued"
            else:
                violation = decision.violation
                status = refused_status(
                    decision.outcome, violation.reason, violation.message, self._runtime.clock.now()
                )
                outcome, reason = decision.outcome, violation.reason
            await self._write(request, status)
        except Exception as err:  # a request's failure must not stop the others
            self._retry(request, one_line(err, for_users=(PKIError, ApiError)))
            return
        elapsed = self._runtime.clock.monotonic() - started
        self._runtime.metrics.observe_pod_certificate(outcome, reason, elapsed)
        if outcome != "Issued":
            logger.info("%s %s/%s: %s", outcome.lower(), *key, reason)

    async def _sign(self, ca: CertificateAuthority, sign: pod_request.Sign) -> dict[str, Any]:
        point = crl_distribution_point(self._settings.crl_url, *self._settings.cluster_ca.key)
        issued = await self._runtime.compute(
            lambda: issue_leaf(
                ca,
                sign.request,
                sign.public_key,
                sign.now,
                backdate=sign.now - sign.not_before,
                crl_distribution_point=point,
            ),
            quick=ca.quick,
        )
        leaf = issued.certificate
        message = f"certificate {format(leaf.serial_number, 'x')} issued by {ca.subject!r}"
        return issued_status(
            issued.chain_pem,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            begin_refresh_at=sign.begin_refresh_at,
            message=message,
            now=self._runtime.clock.now(),
        )

    async def _write(self, request: PodCertificateRequest, status: dict[str, Any]) -> None:
        path = pod_certificate_requests_path(request.namespace, request.name, "status")
        try:
            await self._runtime.kube.merge_patch(path, {"status": status})
        except ApiError as err:
            # Gone, or decided already (a terminal status is immutable): done.
            # Not permitted to sign (also a 422) is a missing RBAC rule: retried.
            if not (err.not_found or err.status == 422) or "not permitted" in err.message:
                raise
            logger.info("request %s/%s: %s", request.namespace, request.name, err.message)
        self._forget(request.key)

    async def _wait_for_ca(self, request: PodCertificateRequest, message: str) -> None:
        created = parse_timestamp(request.created)
        if created is not None and self._runtime.clock.now() - created > CA_PATIENCE:
            status = refused_status(FAILED, CA_UNAVAILABLE, message, self._runtime.clock.now())
            try:
                await self._write(request, status)
            except ApiError as err:
                self._retry(request, one_line(err, for_users=(PKIError, ApiError)))
                return
            self._runtime.metrics.observe_pod_certificate(FAILED, CA_UNAVAILABLE, 0.0)
            return
        self._retry(request, message)

    def _retry(self, request: PodCertificateRequest, message: str) -> None:
        if self._lane.retry(request.key) == 0:
            logger.warning("request %s/%s waits: %s", request.namespace, request.name, message)

    def _ca_changed(self, _: object) -> None:
        for key in self._pending:
            self._lane.add(key)
