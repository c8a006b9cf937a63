"""The trust bundles the operator publishes (ClusterTrustBundles, ConfigMaps
`mtls-ca-bundle` with the cluster CA's CRL), and what is read back of them: by their publisher, and
by the workload controller, which rolls the workloads that mount a
ConfigMap whose bundle changed. Both read the ConfigMaps through one
informer, so the selector and the form they are kept in are spelled here."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.managed_secret import MANAGED_BY_LABEL, MANAGER
from mtls_operator.api.paths import core_path
from mtls_operator.api.revocations import CRL_KEY

CONFIGMAP_NAME = "mtls-ca-bundle"
BUNDLE_KEY = "ca.crt"
# By name, not by label: an unmanaged ConfigMap of that name must be seen
# too, to be left alone.
CONFIGMAP_SELECTOR = {"fieldSelector": f"metadata.name={CONFIGMAP_NAME}"}
# Pods select the bundles with this label (a clusterTrustBundle projection's
# labelSelector), next to the signer name.
BUNDLE_LABEL = "mtls.dev/trust-bundle"
BUNDLE_LABEL_VALUE = "roots"


def configmaps_path(namespace: str | None, name: str | None = None) -> str:
    return core_path("configmaps", namespace, name)


@dataclass(frozen=True)
class Published:
    """A ClusterTrustBundle or ConfigMap as last seen."""

    resource_version: str
    managed: bool
    bundle: str
    signer_name: str = ""  # a ClusterTrustBundle's
    crl: str = ""  # a ConfigMap's

    def content_digest(self, keys: frozenset[str] | None = None) -> str:
        """What pods reading `keys` of it (None: all) get, as one digest.
        The bundle alone digests as it did before CRLs were published
        beside it, so that an upgrade rolls no pod that reads only
        `ca.crt`."""
        content = "".join(
            value
            for key, value in ((BUNDLE_KEY, self.bundle), (CRL_KEY, self.crl))
            if keys is None or key in keys
        )
        return hashlib.sha256(content.encode()).hexdigest()


def published(body: Mapping[str, Any]) -> Published:
    metadata = body.get("metadata") or {}
    labels = metadata.get("labels") or {}
    spec = body.get("spec") or {}
    data = body.get("data") or {}
    return Published(
        resource_version=str(metadata.get("resourceVersion", "")),
        managed=labels.get(MANAGED_BY_LABEL) == MANAGER,
        bundle=str(spec.get("trustBundle") or data.get(BUNDLE_KEY) or ""),
        signer_name=str(spec.get("signerName") or ""),
        crl=str(data.get(CRL_KEY) or ""),
    )


def _labels() -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGER, BUNDLE_LABEL: BUNDLE_LABEL_VALUE}


def trust_bundle_body(name: str, signer_name: str, bundle: str) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "ClusterTrustBundle",
        "metadata": {"name": name, "labels": _labels()},
        "spec": {"signerName": signer_name, "trustBundle": bundle},
    }


def configmap_data(bundle: str, crl: str) -> dict[str, str | None]:
    """The ConfigMap's data, as a merge patch writes it: the roots, and the
    cluster CA's CRL under the key its record keeps it under (no CRL: none
    kept)."""
    return {BUNDLE_KEY: bundle, CRL_KEY: crl or None}


def configmap_body(namespace: str, bundle: str, crl: str = "") -> dict[str, Any]:
    data = {key: value for key, value in configmap_data(bundle, crl).items() if value}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace, "labels": _labels()},
        "data": data,
    }
