"""Gather, for one PodCertificateRequest: the pod, node and service account
it names, as they are now (read from the API: a signer must not take the
request's word for them), and the key it asks to certify. Read-only."""

from __future__ import annotations

import asyncio
import datetime

from mtls_operator.api.pod_certificates import PodCertificateRequest
from mtls_operator.pki import CertificateAuthority
from mtls_operator.pki.requests import public_key_of_request
from mtls_operator.policy.pod_request import Input, PodFacts
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.kube import Kube, Object
from mtls_operator.tenancy.store import Tenancy


def _uid(body: Object | None) -> str | None:
    return str((body.get("metadata") or {}).get("uid", "")) if body is not None else None


class Gatherer:
    def __init__(
        self, kube: Kube, tenancy: Tenancy, clock: Clock, *, max_duration: datetime.timedelta
    ) -> None:
        self._kube = kube
        self._tenancy = tenancy
        self._clock = clock
        self._max_duration = max_duration

    async def gather(self, request: PodCertificateRequest, ca: CertificateAuthority) -> Input:
        """Raises ApiError when the API cannot answer (the request waits)."""
        namespace = request.namespace
        # From the watch cache, as the API server's NodeRestriction reads
        # them: a UID that changed milliseconds ago may not show yet, which
        # is why the kubelet's node is checked by the API server too.
        pod, node, account = await asyncio.gather(
            self._kube.get(f"/api/v1/namespaces/{namespace}/pods/{request.pod_name}", cached=True),
            self._kube.get(f"/api/v1/nodes/{request.node_name}", cached=True),
            self._kube.get(
                f"/api/v1/namespaces/{namespace}/serviceaccounts/{request.service_account_name}",
                cached=True,
            ),
        )
        pod_facts = None
        if pod is not None:
            spec = pod.get("spec") or {}
            pod_facts = PodFacts(
                uid=_uid(pod) or "",
                node_name=str(spec.get("nodeName") or ""),
                service_account_name=str(spec.get("serviceAccountName") or "default"),
            )
        settings = self._tenancy.settings
        return Input(
            request=request,
            pod=pod_facts,
            node_uid=_uid(node),
            service_account_uid=_uid(account),
            public_key=public_key_of_request(request.stub_pkcs10_request),
            ca=ca,
            trust_domain=settings.trust_domain,
            identity=self._tenancy.rules_for(namespace),
            max_duration=self._max_duration,
            now=self._clock.now(),
        )
