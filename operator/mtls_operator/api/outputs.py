"""What a managed Secret holds: its data keys and how each is rendered. One
table: adding an output format is one entry here (and its name in the CRD's
enum, which a test compares with this table)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from mtls_operator.pki import IssuedCertificate, KeyEncoding, PrivateKey, private_key_to_pem
from mtls_operator.pki.keys import private_key_to_der

# What every managed Secret holds, as pods mount it.
TLS_CRT, TLS_KEY, CA_CRT = "tls.crt", "tls.key", "ca.crt"
BASE_DATA_KEYS = frozenset({TLS_CRT, TLS_KEY, CA_CRT})

# Modern PKCS#12 protection (AES-256-CBC, SHA-256 MAC), which Java 11+,
# OpenSSL 3 and Go read; the legacy RC2/3DES forms are not offered.
_PKCS12_KDF_ROUNDS = 100_000


@dataclass(frozen=True)
class Material:
    """Everything an output is made from: one key, its chain and the trust bundle."""

    key: PrivateKey
    encoding: KeyEncoding
    issued: IssuedCertificate
    trust_bundle: tuple[x509.Certificate, ...]
    pkcs12_password: bytes | None = None


@dataclass(frozen=True)
class Output:
    data_keys: tuple[str, ...]
    render: Callable[[Material], dict[str, bytes]]


def _combined_pem(material: Material) -> dict[str, bytes]:
    key_pem = private_key_to_pem(material.key, material.encoding)
    return {"tls-combined.pem": key_pem + material.issued.chain_pem}


def _der(material: Material) -> dict[str, bytes]:
    return {"key.der": private_key_to_der(material.key)}


def _pkcs12(material: Material) -> dict[str, bytes]:
    if material.pkcs12_password is None:
        return {}
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(_PKCS12_KDF_ROUNDS)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(material.pkcs12_password)
    )
    issued = material.issued
    anchors = [
        pkcs12.PKCS12Certificate(certificate, f"ca-{index}".encode())
        for index, certificate in enumerate(material.trust_bundle)
    ]
    return {
        "keystore.p12": pkcs12.serialize_key_and_certificates(
            b"certificate", material.key, issued.certificate, list(issued.intermediates), encryption
        ),
        "truststore.p12": pkcs12.serialize_java_truststore(anchors, encryption),
    }


class OutputFormat(enum.Enum):
    """`spec.additionalOutputFormats[].type`."""

    COMBINED_PEM = "CombinedPEM"
    DER = "DER"


ADDITIONAL_FORMATS: dict[OutputFormat, Output] = {
    OutputFormat.COMBINED_PEM: Output(("tls-combined.pem",), _combined_pem),
    OutputFormat.DER: Output(("key.der",), _der),
}
# `spec.keystores.pkcs12`: a keystore and a truststore for Java.
PKCS12_KEYSTORES = Output(("keystore.p12", "truststore.p12"), _pkcs12)

# The data keys the operator writes; any other key in a Secret is someone else's.
MANAGED_DATA_KEYS = BASE_DATA_KEYS.union(
    *(output.data_keys for output in (*ADDITIONAL_FORMATS.values(), PKCS12_KEYSTORES))
)


def outputs_for(formats: Iterable[OutputFormat], keystores: bool) -> tuple[Output, ...]:
    """The outputs a spec asks for, in a fixed order."""
    chosen = [ADDITIONAL_FORMATS[f] for f in OutputFormat if f in set(formats)]
    return (*chosen, PKCS12_KEYSTORES) if keystores else tuple(chosen)


def expected_data_keys(formats: Iterable[OutputFormat], keystores: bool) -> frozenset[str]:
    return BASE_DATA_KEYS.union(*(o.data_keys for o in outputs_for(formats, keystores)))


def render_outputs(
    formats: Iterable[OutputFormat], keystores: bool, material: Material
) -> dict[str, bytes]:
    rendered: dict[str, bytes] = {}
    for output in outputs_for(formats, keystores):
        rendered.update(output.render(material))
    return rendered
