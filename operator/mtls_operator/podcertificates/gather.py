"""Gather, for one PodCertificateRequest: the pod, node and service account
it names, as they are now (a signer must not take the request's word for
them), and the key it asks to certify. Read-only."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import TypeVar

from mtls_operator.api.paths import core_path
from mtls_operator.api.pod_certificates import PodCertificateRequest
from mtls_operator.pki import CertificateAuthority
from mtls_operator.pki.requests import public_key_of_request
from mtls_operator.podcertificates.directory import Directory, pod_facts, uid_of
from mtls_operator.policy.pod_request import Input, PodFacts
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.kube import Kube, Object
from mtls_operator.tenancy.store import Tenancy

F = TypeVar("F")


@dataclass(frozen=True)
class Gatherer:
    kube: Kube
    directory: Directory
    tenancy: Tenancy
    clock: Clock
    _: KW_ONLY
    max_duration: datetime.timedelta

    async def gather(self, request: PodCertificateRequest, ca: CertificateAuthority) -> Input:
        """Raises ApiError when the API cannot answer (the request waits).

        A fact the directory holds is taken when it agrees with the request;
        one it lacks or that disagrees is read from the API server's watch
        cache (as its NodeRestriction reads them), so that a refusal never
        rests on a watch that lags: a UID that changed milliseconds ago may
        not show yet, which is why the kubelet's node is checked by the API
        server too."""
        namespace = request.namespace
        claimed_pod = PodFacts(request.pod_uid, request.node_name, request.service_account_name)
        # One after the other: each is a dictionary look-up unless it disagrees.
        pod = await self._confirm(
            self.directory.pods.get((namespace, request.pod_name)),
            claimed_pod,
            core_path("pods", namespace, request.pod_name),
            pod_facts,
        )
        node_uid = await self._confirm(
            self.directory.node_uid(request.node_name),
            request.node_uid,
            core_path("nodes", None, request.node_name),
            uid_of,
        )
        account_uid = await self._confirm(
            self.directory.service_accounts.get((namespace, request.service_account_name)),
            request.service_account_uid,
            core_path("serviceaccounts", namespace, request.service_account_name),
            uid_of,
        )
        settings = self.tenancy.settings
        return Input(
            request=request,
            pod=pod,
            node_uid=node_uid,
            service_account_uid=account_uid,
            public_key=public_key_of_request(request.stub_pkcs10_request),
            ca=ca,
            trust_domain=settings.trust_domain,
            identity=self.tenancy.rules_for(namespace),
            max_duration=self.max_duration,
            now=self.clock.now(),
        )

    async def _confirm(
        self, known: F | None, claimed: F, path: str, fact: Callable[[Object], F]
    ) -> F | None:
        if known == claimed:
            return known
        body = await self.kube.get(path, cached=True)
        return fact(body) if body is not None else None
