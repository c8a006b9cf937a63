"""The Secrets a certificate's spec names besides its own: its CA Secret
(`caSecretName`) and its keystore password Secret. Each is watched by name
while a certificate names it, within its namespace's quota of watches."""

from __future__ import annotations

from collections.abc import Callable

from mtls_operator.api.spec import CertificateSpec, InvalidSpec
from mtls_operator.authorities.store import AuthorityStore, CARef
from mtls_operator.certificates.keystore_passwords import KeystorePasswords
from mtls_operator.runtime.kube import ObjectKey


class SpecSecrets:
    def __init__(
        self,
        authorities: AuthorityStore,
        passwords: KeystorePasswords,
        notify: Callable[[ObjectKey], None],
    ) -> None:
        """`notify(certificate)` when a Secret it names changes, or when a
        watch it was refused is free."""
        self._authorities = authorities
        self._passwords = passwords
        self._notify = notify

    def use(self, certificate: ObjectKey, spec: CertificateSpec, ca: CARef) -> None:
        """Watch what `spec` names from now on (and no longer what it named
        before). InvalidSpec for a Secret its namespace has no watch to spare
        for: `certificate` is looked at again when one is freed."""
        tenant_ca = spec.ca_secret_name is not None
        refused = self._authorities.use(ca, self._notify, certificate, tenant=tenant_ca)
        if refused is not None:
            raise InvalidSpec("caSecretName", spec.ca_secret_name, refused)
        self._passwords.use(certificate, spec)

    def forget(self, certificate: ObjectKey) -> None:
        """`certificate` is gone: it names nothing any more."""
        self._authorities.release(self._notify, certificate)
        self._passwords.forget(certificate)
