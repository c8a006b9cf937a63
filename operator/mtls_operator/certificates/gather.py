"""Gather: everything the decision needs about one certificate, read from
memory (kept current by watches) and, for a Secret the operator does not
own, from the API. It writes nothing to the API and starts no watch; the
one thing it changes is memory: a Secret it reads again from the API is
recorded in the store (or among the foreign Secrets), as a watch would."""

from __future__ import annotations

from dataclasses import dataclass

from mtls_operator.api.revocations import (
    RevocationRequestError,
    RevokeRequest,
    revoke_request,
)
from mtls_operator.api.spec import CertificateSpec
from mtls_operator.authorities.store import CARef
from mtls_operator.certificates.foreign_secrets import ForeignSecrets
from mtls_operator.certificates.keystore_passwords import KeystorePasswords
from mtls_operator.certificates.store import CertificateRecord, Store
from mtls_operator.pki import CertificateAuthority
from mtls_operator.policy.certificate import Input
from mtls_operator.shared import SharedParts


@dataclass(frozen=True)
class Gatherer:
    store: Store
    foreign: ForeignSecrets
    passwords: KeystorePasswords
    # The identity policy's view, the CAs' revocations, the clock.
    shared: SharedParts

    async def gather(
        self,
        record: CertificateRecord,
        spec: CertificateSpec,
        ca_ref: CARef,
        ca: CertificateAuthority,
        *,
        cluster_ca: bool,
    ) -> Input:
        """`cluster_ca`: signed by the cluster CA, so judged by the identity
        policy (a namespace's own CA is the namespace's own business)."""
        secret = self.store.secrets.get(
            (record.namespace, spec.secret_name)
        ) or await self.foreign.current(record.namespace, spec.secret_name)
        revoke = _revoke_asked(record)
        recorded = isinstance(revoke, RevokeRequest) and self.shared.revocations.holds(
            ca_ref, revoke.serial_number
        )
        return Input(
            certificate=record.ref,
            spec=spec,
            secret=secret,
            ca=ca,
            now=self.shared.runtime.clock.now(),
            older_claimant=self.store.older_claimant(record),
            identity=self.shared.tenancy.rules_for(record.namespace) if cluster_ca else None,
            keystore_password=await self.passwords.digest(record.namespace, spec, secret),
            revoke=revoke,
            revocation_recorded=recorded,
        )


def _revoke_asked(record: CertificateRecord) -> RevokeRequest | RevocationRequestError | None:
    try:
        return revoke_request(record.annotations)
    except RevocationRequestError as err:
        return err
