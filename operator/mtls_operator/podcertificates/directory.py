"""What the signer knows, from watches of its own, of the pods, nodes and
service accounts that requests name: each object reduced to the facts a
request is checked against (a pod to three strings and the annotations its
podCertificate volumes declare, a node or a service account to its UID, read
metadata-only), as kube-controller-manager's controllers keep informers
instead of reading an object per request."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

from mtls_operator.api.kept import kept
from mtls_operator.api.paths import core_path
from mtls_operator.policy.pod_request import Annotations, PodFacts
from mtls_operator.runtime.kube import Kube, Object, ObjectKey, object_key
from mtls_operator.runtime.reflector import Reflector

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

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


class FactTable(Generic[K, V]):
    """One small fact per object of a watched collection (a PagedSink)."""

    def __init__(self, key: Callable[[Object], K], fact: Callable[[Object], V]) -> None:
        self._key, self._fact = key, fact
        self.known: dict[K, V] = {}
        self._listed: set[K] = set()

    def begin_relist(self) -> None:
        self._listed = set()

    def add_page(self, items: list[Object]) -> None:
        for item in items:
            key = self._key(item)
            self.known[key] = self._fact(item)
            self._listed.add(key)

    def end_relist(self) -> None:
        for key in self.known.keys() - self._listed:
            del self.known[key]
        self._listed = set()

    def apply(self, event_type: str, obj: Object) -> None:
        key = self._key(obj)
        if event_type == "DELETED":
            self.known.pop(key, None)
        else:
            self.known[key] = self._fact(obj)


class Directory:
    """Filled by the watches `reflectors` returns; a fact missing here is
    read from the API by who asks (the watches may lag, or be refused)."""

    def __init__(self) -> None:
        self.pods: FactTable[ObjectKey, PodFacts] = FactTable(object_key, pod_facts)
        self.nodes: FactTable[str, str] = FactTable(lambda b: object_key(b)[1], uid_of)
        self.service_accounts: FactTable[ObjectKey, str] = FactTable(object_key, uid_of)

    def reflectors(self, kube: Kube, namespaces: tuple[str, ...]) -> dict[str, Reflector]:
        """The watches that keep this current, by name: pods and service
        accounts of `namespaces` (empty: all), and every node."""
        found = {"nodes": Reflector(kube, core_path("nodes"), self.nodes, metadata_only=True)}
        for namespace in namespaces or (None,):
            suffix = namespace or "all"
            found[f"pods-{suffix}"] = Reflector(
                kube, core_path("pods", namespace), self.pods, SCHEDULED_PODS
            )
            found[f"serviceaccounts-{suffix}"] = Reflector(
                kube,
                core_path("serviceaccounts", namespace),
                self.service_accounts,
                metadata_only=True,
            )
        return found
