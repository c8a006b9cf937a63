"""CA Secrets: the layouts a CA may be kept in, its passphrase, and the
self-signed cluster CA the operator can bootstrap."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from mtls_operator.pki import (
    CAError,
    CAProblem,
    CertificateAuthority,
    KeySpec,
    certificates_to_pem,
    create_root_ca,
    load_ca,
    private_key_to_pem,
)

PASSPHRASE_ANNOTATION = "mtls.dev/passphrase-secret"
PASSPHRASE_KEY = "passphrase"
BOOTSTRAP_COMMON_NAME = "mtls-operator cluster CA"

# (certificate key, private key key): what `kubectl create secret tls` makes,
# the cert-manager-style pair, and the openssl recipe's file names.
CA_LAYOUTS = (
    ("tls.crt", "tls.key"),
    ("ca.crt", "ca.key"),
    ("ca-crt.pem", "ca-key.pem"),
)
TRUST_BUNDLE_KEY = "ca.crt"


def ca_from_secret_data(
    data: Mapping[str, bytes], now: datetime.datetime, passphrase: bytes | None = None
) -> CertificateAuthority:
    """Load the CA from the first complete layout. A `ca.crt` next to
    `tls.crt` or `ca-crt.pem` is the trust bundle handed to every leaf
    Secret; in the `ca.crt` + `ca.key` layout, `ca.crt` is both."""
    for certificate_key, private_key_key in CA_LAYOUTS:
        if data.get(certificate_key) and data.get(private_key_key):
            bundle = data.get(TRUST_BUNDLE_KEY) if certificate_key != TRUST_BUNDLE_KEY else None
            return load_ca(data[certificate_key], data[private_key_key], now, passphrase, bundle)
    expected = ", ".join(f"{c} + {k}" for c, k in CA_LAYOUTS)
    raise CAError(CAProblem.INCOMPLETE, f"the Secret holds no CA: expected {expected}")


def passphrase_secret_name(annotations: Mapping[str, str]) -> str | None:
    return annotations.get(PASSPHRASE_ANNOTATION) or None


def passphrase_from_secret_data(data: Mapping[str, bytes]) -> bytes:
    """The `passphrase` key, without the trailing newline `echo` leaves."""
    value = data.get(PASSPHRASE_KEY)
    if not value:
        raise CAError(
            CAProblem.KEY_UNREADABLE, f"the passphrase Secret has no '{PASSPHRASE_KEY}' key"
        )
    return value.rstrip(b"\r\n")


def bootstrap_ca_data(now: datetime.datetime) -> dict[str, bytes]:
    """A fresh self-signed root (ECDSA P-256, 10 years) as a CA Secret's data."""
    key = KeySpec().generate()
    certificate_pem = certificates_to_pem([create_root_ca(key, BOOTSTRAP_COMMON_NAME, now)])
    return {
        "tls.crt": certificate_pem,
        "tls.key": private_key_to_pem(key),
        TRUST_BUNDLE_KEY: certificate_pem,
    }
