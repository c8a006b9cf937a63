"""The keystore password Secrets that certificates name: each watched by
name while a certificate names it, so that a new password re-encrypts the
keystores at once (without issuing anew), and read from memory."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from mtls_operator.api.managed_secret import SecretFacts, keystore_password_digest
from mtls_operator.api.spec import CertificateSpec, InvalidSpec, SecretKeyRef
from mtls_operator.pki import PKIError
from mtls_operator.runtime.cache import SharedCache
from mtls_operator.runtime.kube import ObjectKey
from mtls_operator.runtime.named_secrets import PASSWORD_SECRETS_PER_NAMESPACE, NamedSecrets


class KeystorePasswords:
    def __init__(self, cache: SharedCache, notify: Callable[[ObjectKey], None]) -> None:
        # Users are certificate keys: a password change looks at them again.
        self._secrets = NamedSecrets[ObjectKey](
            cache, notify, per_namespace=PASSWORD_SECRETS_PER_NAMESPACE
        )

    def use(self, certificate: ObjectKey, spec: CertificateSpec) -> None:
        """The password Secret `spec` names (if any) is the one `certificate`
        uses now. InvalidSpec when its namespace has as many in use as it may
        (`certificate` is looked at again when one is freed)."""
        ref = spec.pkcs12_password
        if ref is None:
            self._secrets.release(certificate)
        elif not self._secrets.use((certificate[0], ref.name), certificate):
            problem = self._secrets.quota.refusal(certificate[0], "keystore password Secrets")
            raise InvalidSpec("keystores.pkcs12.passwordSecretRef.name", ref.name, problem)

    def forget(self, certificate: ObjectKey) -> None:
        self._secrets.release(certificate)

    async def password(self, namespace: str, spec: CertificateSpec) -> bytes | None:
        """The password to encrypt `spec`'s keystores with; None without keystores."""
        ref = spec.pkcs12_password
        if ref is None:
            return None
        data = await self._secrets.data((namespace, ref.name))
        value = _password(data, ref)
        if value is None:
            missing = "does not exist" if data is None else f"has no key {ref.key!r}"
            raise PKIError(f"keystore password Secret {namespace}/{ref.name} {missing}")
        return value

    async def digest(
        self, namespace: str, spec: CertificateSpec, secret: SecretFacts | None
    ) -> str | None:
        """The digest the keystores in `secret` would record for the current
        password; None when there is nothing to compare (no keystores, no
        certificate yet, or no password to read: the keystores are kept)."""
        ref = spec.pkcs12_password
        if ref is None or secret is None or secret.leaf is None:
            return None
        value = _password(await self._secrets.data((namespace, ref.name)), ref)
        if value is None:
            return None
        return keystore_password_digest(secret.leaf.serial_number, value)

    async def close(self) -> None:
        await self._secrets.close()


def _password(data: Mapping[str, bytes] | None, ref: SecretKeyRef) -> bytes | None:
    value = (data or {}).get(ref.key)
    # Without the trailing newline `echo ... > file; kubectl create secret --from-file` leaves.
    return value.rstrip(b"\r\n") if value else None
