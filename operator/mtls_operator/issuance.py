"""Turning a spec and a CA into the contents of a Secret: key, chain, trust
bundle and the extra formats. Pure and CPU-bound; callers run it in a worker
thread so key generation never blocks the event loop."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mtls_operator.pki import (
    CertificateAuthority,
    IssuedCertificate,
    KeyLoadError,
    PrivateKey,
    issue_leaf,
    load_certificates,
    load_private_key,
    private_key_to_pem,
)
from mtls_operator.pki.keys import key_spec_of, private_key_to_der
from mtls_operator.secrets import (
    CA_CRT,
    COMBINED_PEM,
    KEY_DER,
    KEYSTORE_P12,
    TLS_CRT,
    TLS_KEY,
    TRUSTSTORE_P12,
)
from mtls_operator.spec import CertificateSpec, OutputFormat, RotationPolicy

# Modern PKCS#12 protection (AES-256-CBC, SHA-256 MAC), which Java 11+,
# OpenSSL 3 and Go read; the legacy RC2/3DES forms are not offered.
_PKCS12_KDF_ROUNDS = 100_000


@dataclass(frozen=True)
class SecretContent:
    data: Mapping[str, bytes]
    issued: IssuedCertificate


def issue_secret_content(
    spec: CertificateSpec,
    ca: CertificateAuthority,
    now: datetime.datetime,
    *,
    previous_key_pem: bytes | None = None,
    pkcs12_password: bytes | None = None,
) -> SecretContent:
    """Sign a new certificate. With rotationPolicy Never the previous key is
    kept when it still has the algorithm and size the spec asks for."""
    key = _reusable_key(spec, previous_key_pem) or spec.private_key.key.generate()
    issued = issue_leaf(ca, spec.request, key.public_key(), now)
    data = {
        TLS_CRT: issued.chain_pem,
        TLS_KEY: private_key_to_pem(key, spec.private_key.encoding),
        CA_CRT: ca.trust_bundle_pem,
    }
    data.update(extra_outputs(spec, key, issued, ca, pkcs12_password))
    return SecretContent(data, issued)


def extra_outputs(
    spec: CertificateSpec,
    key: PrivateKey,
    issued: IssuedCertificate,
    ca: CertificateAuthority,
    pkcs12_password: bytes | None,
) -> dict[str, bytes]:
    """The additional formats the spec asks for, from the same key and chain."""
    outputs: dict[str, bytes] = {}
    if OutputFormat.COMBINED_PEM in spec.output_formats:
        outputs[COMBINED_PEM] = (
            private_key_to_pem(key, spec.private_key.encoding) + issued.chain_pem
        )
    if OutputFormat.DER in spec.output_formats:
        outputs[KEY_DER] = private_key_to_der(key)
    if spec.pkcs12_password is not None and pkcs12_password is not None:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(_PKCS12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(pkcs12_password)
        )
        outputs[KEYSTORE_P12] = pkcs12.serialize_key_and_certificates(
            b"certificate", key, issued.certificate, list(issued.intermediates), encryption
        )
        anchors = [
            pkcs12.PKCS12Certificate(certificate, f"ca-{index}".encode())
            for index, certificate in enumerate(ca.trust_bundle)
        ]
        outputs[TRUSTSTORE_P12] = pkcs12.serialize_java_truststore(anchors, encryption)
    return outputs


def _reusable_key(spec: CertificateSpec, previous_key_pem: bytes | None) -> PrivateKey | None:
    if spec.private_key.rotation is not RotationPolicy.NEVER or not previous_key_pem:
        return None
    try:
        key = load_private_key(previous_key_pem)
    except KeyLoadError:
        return None
    return key if key_spec_of(key) == spec.private_key.key else None


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
    return {CA_CRT: ca.trust_bundle_pem, **extra_outputs(spec, key, issued, ca, pkcs12_password)}
