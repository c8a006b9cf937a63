"""Names of the API this operator serves, and a reference to one object of it."""

from __future__ import annotations

from dataclasses import dataclass

from mtls_operator.api.paths import resource_path

GROUP = "mtls.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MtlsCertificate"
PLURAL = "mtlscertificates"
# Set by users (or `mtls-operator renew`) to ask for one re-issuance.
RENEW_REQUESTED_ANNOTATION = "mtls.dev/renew-requested-at"


def certificates_path(
    namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    return resource_path(API_VERSION, PLURAL, namespace, name, subresource)


def policies_path(name: str | None = None, subresource: str | None = None) -> str:
    """MtlsPolicies are cluster-scoped."""
    return resource_path(API_VERSION, "mtlspolicies", None, name, subresource)


@dataclass(frozen=True)
class CertificateRef:
    """An MtlsCertificate as the Secrets and Events about it refer to it."""

    namespace: str
    name: str
    uid: str
    # The raw value of the renew-requested-at annotation, if any.
    renewal_request: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def owner_reference(self) -> dict[str, object]:
        # Not a controller reference with blockOwnerDeletion: deleting the
        # certificate must never wait on the Secret.
        return {"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid}

    def involved_object(self) -> dict[str, str]:
        """The object an Event is about."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
        }
