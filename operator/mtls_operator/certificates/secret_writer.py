"""Act, on the Secret: write a newly issued key pair, or repair what drifted
around a valid one. Every update is a merge patch that carries the
resourceVersion it was computed from, so a concurrent change makes it fail
(and the certificate is looked at again) instead of being overwritten."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from mtls_operator.api.managed_secret import (
    KEYSTORE_PASSWORD_ANNOTATION,
    NOT_AFTER_ANNOTATION,
    SERIAL_ANNOTATION,
    KnownKeyPair,
    SecretFacts,
    issuance_record,
    issued_leaf_facts,
    keystore_password_digest,
    new_secret,
    read_secret,
    secret_patch,
)
from mtls_operator.api.outputs import TLS_CRT, TLS_KEY
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.secret_data import decode_data
from mtls_operator.api.spec import CertificateSpec, RotationPolicy
from mtls_operator.certificates.content import SecretContent, issue_secret_content, repaired_data
from mtls_operator.certificates.foreign_secrets import ForeignSecrets
from mtls_operator.certificates.keystore_passwords import KeystorePasswords
from mtls_operator.certificates.store import CertificateRecord, Store
from mtls_operator.pki import CertificateAuthority, LeafRequest
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kube import Object


@dataclass(frozen=True)
class Written:
    """A Secret just written with a new certificate."""

    content: SecretContent
    facts: SecretFacts | None
    serial: str
    not_after: str
    revision: int


@dataclass(frozen=True)
class SecretWriter:
    runtime: Runtime
    store: Store
    foreign: ForeignSecrets
    passwords: KeystorePasswords

    async def issue(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        request: LeafRequest,
        ca: CertificateAuthority,
        secret: SecretFacts | None,
        *,
        new_key: bool = False,
        crl_distribution_point: str | None = None,
    ) -> Written | None:
        """Generate the key (or keep it, unless `new_key`), sign `request`,
        and write the Secret; None when a concurrent write won."""
        now = self.runtime.clock.now()
        password = await self.passwords.password(record.namespace, spec)
        reuse_key = secret is not None and not new_key
        content = await self._sign(
            record,
            spec,
            request,
            ca,
            password,
            reuse_key=reuse_key,
            now=now,
            crl_distribution_point=crl_distribution_point,
        )
        revision = max(secret.revision if secret else 0, record.status_revision) + 1
        annotations = issuance_record(
            spec,
            content.issued,
            ca,
            issued_at=now,
            revision=revision,
            renewal_request=record.ref.renewal_request,
        )
        annotations.update(_password_record(annotations[SERIAL_ANNOTATION], password))
        data = content.data
        written = await self._create_or_patch(record, spec, secret, data, annotations)
        if written is None:
            return None
        known = KnownKeyPair(
            data[TLS_CRT],
            data[TLS_KEY],
            issued_leaf_facts(content.issued.certificate, ca.subject, ca.key_identifier),
        )
        facts = self.store.secrets.wrote(written, read_secret(written, known)) or (
            self.store.secrets.get((record.namespace, spec.secret_name))
        )
        return Written(
            content,
            facts,
            serial=annotations[SERIAL_ANNOTATION],
            not_after=annotations[NOT_AFTER_ANNOTATION],
            revision=revision,
        )

    async def _create_or_patch(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        secret: SecretFacts | None,
        data: Mapping[str, bytes],
        annotations: dict[str, str],
    ) -> Object | None:
        if secret is None:
            body = new_secret(record.ref, spec, data, annotations)
            path = secrets_path(record.namespace)
            return await self._write(record, spec, lambda: self.runtime.kube.create(path, body))
        patch = secret_patch(secret, record.ref, spec, data=data, record=annotations)
        path = secrets_path(record.namespace, spec.secret_name)
        return await self._write(record, spec, lambda: self.runtime.kube.merge_patch(path, patch))

    async def _sign(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        request: LeafRequest,
        ca: CertificateAuthority,
        password: bytes | None,
        *,
        reuse_key: bool,
        now: datetime.datetime,
        crl_distribution_point: str | None,
    ) -> SecretContent:
        """In a worker thread unless quick: RSA key generation takes up to
        seconds, and keystores derive keys from their passwords."""
        previous_key = None
        if reuse_key and spec.private_key.rotation is RotationPolicy.NEVER:
            previous_key = await self._secret_data(record.namespace, spec.secret_name, TLS_KEY)
        return await self.runtime.compute(
            lambda: issue_secret_content(
                spec,
                ca,
                now,
                request=request,
                previous_key_pem=previous_key,
                pkcs12_password=password,
                crl_distribution_point=crl_distribution_point,
            ),
            quick=_quick(spec, ca),
        )

    async def repair(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca: CertificateAuthority,
        secret: SecretFacts,
        rewrite_data: bool,
    ) -> SecretFacts | None:
        """Bring metadata (and with `rewrite_data`, the trust bundle and the
        extra formats) up to date without issuing; None when a concurrent
        write won or the Secret is gone."""
        data: dict[str, bytes] = {}
        record_password: dict[str, str] = {}
        if rewrite_data:
            current = await self.runtime.kube.get(secrets_path(record.namespace, spec.secret_name))
            if current is None:
                return None
            password = await self.passwords.password(record.namespace, spec)
            current_data = decode_data(current.get("data"))
            data = await self.runtime.compute(
                lambda: repaired_data(spec, ca, current_data, password),
                quick=_quick(spec, ca),
            )
            if secret.leaf is not None:
                record_password = _password_record(secret.leaf.serial_number, password)
        patch = secret_patch(secret, record.ref, spec, data=data, record=record_password)
        written = await self._write(
            record,
            spec,
            lambda: self.runtime.kube.merge_patch(
                secrets_path(record.namespace, spec.secret_name), patch
            ),
        )
        if written is None:
            return None
        return self.store.secrets.wrote(written) or secret

    async def _write(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        request: Callable[[], Awaitable[Object]],
    ) -> Object | None:
        try:
            return await request()
        except ApiError as err:
            if not err.conflict:
                raise
        await self.foreign.refresh(record.namespace, spec.secret_name)
        return None

    async def _secret_data(self, namespace: str, name: str, key: str) -> bytes | None:
        body = await self.runtime.kube.get(secrets_path(namespace, name))
        return decode_data(body.get("data")).get(key) if body else None


def _quick(spec: CertificateSpec, ca: CertificateAuthority) -> bool:
    """No RSA key to make or sign with, and no keystore to encrypt."""
    return ca.quick and spec.private_key.key.quick and not spec.output_formats


def _password_record(serial: str, password: bytes | None) -> dict[str, str]:
    """The annotation that says which password the keystores are encrypted with."""
    if password is None:
        return {}
    return {KEYSTORE_PASSWORD_ANNOTATION: keystore_password_digest(serial, password)}
