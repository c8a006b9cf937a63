"""Where a CA is kept: the names of its certificate and key, in a Secret's
data or as files in a directory (the same names, so that a directory can be
turned into a Secret with `kubectl create secret generic --from-file`), and
which of them is the trust bundle handed to relying parties."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping

from mtls_operator.pki import CAError, CAProblem, CertificateAuthority, load_ca, load_private_key
from mtls_operator.pki.ca import KeyLoader

# (certificate, private key), in order of preference: what
# `kubectl create secret tls` makes, the cert-manager-style pair, and the
# openssl recipe's file names.
CA_LAYOUTS = (
    ("tls.crt", "tls.key"),
    ("ca.crt", "ca.key"),
    ("ca-crt.pem", "ca-key.pem"),
)
# Beside another layout, the trust bundle (it may hold several roots, as
# during a CA rotation); in the `ca.crt` + `ca.key` layout it is the CA itself.
TRUST_BUNDLE_KEY = "ca.crt"

# Where a CA Secret names the Secret holding the passphrase of its key.
PASSPHRASE_ANNOTATION = "mtls.dev/passphrase-secret"
PASSPHRASE_KEY = "passphrase"


class NoCAFound(CAError):
    """None of the layouts is complete."""

    def __init__(self) -> None:
        expected = ", ".join(f"{c} + {k}" for c, k in CA_LAYOUTS)
        super().__init__(CAProblem.INCOMPLETE, f"no CA found: expected {expected}")


def load_ca_from(
    read: Callable[[str], bytes | None],
    now: datetime.datetime,
    passphrase: bytes | None = None,
    *,
    load_key: KeyLoader = load_private_key,
) -> CertificateAuthority:
    """Load the CA from the first complete layout; `read(name)` gives the
    content of a data key or file, or None. Raises CAError."""
    layout = complete_layout(read)
    if layout is None:
        raise NoCAFound
    certificate_name, key_name = layout
    bundle = read(TRUST_BUNDLE_KEY) if certificate_name != TRUST_BUNDLE_KEY else None
    return load_ca(
        read(certificate_name) or b"",
        read(key_name) or b"",
        now,
        passphrase,
        bundle,
        load_key=load_key,
    )


def complete_layout(read: Callable[[str], bytes | None]) -> tuple[str, str] | None:
    """The (certificate, key) names of the first layout with both present."""
    return next(((c, k) for c, k in CA_LAYOUTS if read(c) and read(k)), None)


def ca_from_secret_data(
    data: Mapping[str, bytes],
    now: datetime.datetime,
    passphrase: bytes | None = None,
    *,
    load_key: KeyLoader = load_private_key,
) -> CertificateAuthority:
    return load_ca_from(data.get, now, passphrase, load_key=load_key)


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
