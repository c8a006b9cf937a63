"""Turning a spec and a CA into the contents of a Secret: key, chain, trust
bundle and the extra formats. Pure and CPU-bound; callers run it in a crypto
thread unless it is quick, so RSA key generation never blocks the event loop."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from mtls_operator.api.outputs import CA_CRT, TLS_CRT, TLS_KEY, Material, render_outputs
from mtls_operator.api.spec import CertificateSpec, RotationPolicy
from mtls_operator.pki import (
    CertificateAuthority,
    IssuedCertificate,
    KeyLoadError,
    LeafRequest,
    PrivateKey,
    issue_leaf,
    load_certificates,
    load_private_key,
    private_key_to_pem,
)
from mtls_operator.pki.keys import key_spec_of


@dataclass(frozen=True)
class SecretContent:
    data: Mapping[str, bytes]
    issued: IssuedCertificate


def issue_secret_content(
    spec: CertificateSpec,
    ca: CertificateAuthority,
    now: datetime.datetime,
    *,
    request: LeafRequest | None = None,
    previous_key_pem: bytes | None = None,
    pkcs12_password: bytes | None = None,
    crl_distribution_point: str | None = None,
) -> SecretContent:
    """Sign a new certificate for `request` (default: the spec's). With
    rotationPolicy Never the previous key is kept when it still has the
    algorithm and size the spec asks for."""
    key = _reusable_key(spec, previous_key_pem) or spec.private_key.key.generate()
    issued = issue_leaf(
        ca,
        request or spec.request,
        key.public_key(),
        now,
        crl_distribution_point=crl_distribution_point,
    )
    data = {
        TLS_CRT: issued.chain_pem,
        TLS_KEY: private_key_to_pem(key, spec.private_key.encoding),
        CA_CRT: ca.trust_bundle_pem,
    }
    data.update(_outputs(spec, key, issued, ca, pkcs12_password))
    return SecretContent(data, issued)


def repaired_data(
    spec: CertificateSpec,
    ca: CertificateAuthority,
    data: Mapping[str, bytes],
    pkcs12_password: bytes | None,
) -> dict[str, bytes]:
    """The trust bundle and the extra formats rebuilt around the key and
    chain already in the Secret, without issuing a new certificate."""
    key = load_private_key(data[TLS_KEY])
    chain = load_certificates(data[TLS_CRT])
    issued = IssuedCertificate(chain[0], tuple(chain[1:]), clamped_to_ca=False)
    return {CA_CRT: ca.trust_bundle_pem, **_outputs(spec, key, issued, ca, pkcs12_password)}


def _outputs(
    spec: CertificateSpec,
    key: PrivateKey,
    issued: IssuedCertificate,
    ca: CertificateAuthority,
    pkcs12_password: bytes | None,
) -> dict[str, bytes]:
    material = Material(key, spec.private_key.encoding, issued, ca.trust_bundle, pkcs12_password)
    return render_outputs(spec.output_formats, spec.pkcs12_password is not None, material)


def _reusable_key(spec: CertificateSpec, previous_key_pem: bytes | None) -> PrivateKey | None:
    if spec.private_key.rotation is not RotationPolicy.NEVER or not previous_key_pem:
        return None
    try:
        # Unchecked at first: an RSA key that an ECDSA spec (signed on the
        # event loop) would not keep is not worth its consistency check.
        key = load_private_key(previous_key_pem, check_rsa=False)
        if key_spec_of(key) != spec.private_key.key:
            return None
        # Kept: checked now, in a worker thread (an RSA spec is not quick).
        return load_private_key(previous_key_pem) if isinstance(key, rsa.RSAPrivateKey) else key
    except KeyLoadError:
        return None
