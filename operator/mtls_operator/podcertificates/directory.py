"""What the signer knows, from the shared cache, of the pods, nodes and
service accounts that requests name: each object reduced to the facts a
request is checked against (a pod to three strings and the annotations its
podCertificate volumes declare, a node or a service account to its UID, read
metadata-only), as kube-controller-manager's controllers keep informers
instead of reading an object per request."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from mtls_operator.api.kept import kept
from mtls_operator.api.paths import core_path
from mtls_operator.policy.pod_request import Annotations, PodFacts
from mtls_operator.runtime.cache import SharedCache

# A kubelet asks only for the pods bound to its node: the others are not kept.
SCHEDULED_PODS = {"fieldSelector": "spec.nodeName!="}


def uid_of(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("uid", ""))


def pod_facts(body: Mapping[str, Any]) -> PodFacts:
    spec = body.get("spec") or {}
    # A node's and an account's name are shared by many pods: one copy each.
    return PodFacts(
        uid=uid_of(body),
        node_name=kept(str(spec.get("nodeName") or "")),
        service_account_name=kept(str(spec.get("serviceAccountName") or "default")),
        certificate_volumes=_certificate_volumes(spec),
    )


def _certificate_volumes(spec: Mapping[str, Any]) -> tuple[tuple[str, Annotations], ...]:
    """(signerName, userAnnotations) of each podCertificate projected volume source."""
    found = []
    for volume in spec.get("volumes") or ():
        for source in (volume.get("projected") or {}).get("sources") or ():
            certificate = source.get("podCertificate")
            if isinstance(certificate, Mapping):
                annotations = certificate.get("userAnnotations") or {}
                found.append(
                    (
                        kept(str(certificate.get("signerName") or "")),
                        tuple(sorted((str(k), str(v)) for k, v in annotations.items())),
                    )
                )
    return tuple(found)


class Directory:
    """Filled by the cache's watches: pods and service accounts of
    `namespaces` (empty: all), and every node. A fact missing here is read
    from the API by who asks (the watches may lag, or be refused)."""

    def __init__(self, cache: SharedCache, namespaces: tuple[str, ...]) -> None:
        self.nodes = cache.informer("nodes", core_path("nodes"), uid_of, metadata_only=True)
        self.pods = cache.group(
            "pods", partial(core_path, "pods"), pod_facts, namespaces, SCHEDULED_PODS
        )
        self.service_accounts = cache.group(
            "serviceaccounts",
            partial(core_path, "serviceaccounts"),
            uid_of,
            namespaces,
            metadata_only=True,
        )

    def node_uid(self, name: str) -> str | None:
        return self.nodes.get(("", name))
