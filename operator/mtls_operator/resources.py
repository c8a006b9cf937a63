"""Names of the API this operator serves, and a reference to one object of it."""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "mtls.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MtlsCertificate"
PLURAL = "mtlscertificates"
RENEW_REQUESTED_ANNOTATION = "mtls.dev/renew-requested-at"


@dataclass(frozen=True)
class CertificateRef:
    """An MtlsCertificate as the Secrets it owns refer to it."""

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
