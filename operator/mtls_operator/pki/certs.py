"""Reading and writing X.509 certificates, and the facts callers compare."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization

from mtls_operator.pki.errors import CertificateLoadError

_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in PEM text (in order), or the one DER certificate."""
    if _PEM_MARKER in data:
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError as err:
            raise CertificateLoadError(f"the PEM certificate data is malformed: {err}") from err
    if data.lstrip().startswith(b"-----BEGIN"):
        raise CertificateLoadError("the PEM data holds no CERTIFICATE block")
    if not data.strip():
        raise CertificateLoadError("the certificate data is empty")
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError as err:
        raise CertificateLoadError("the data is neither a PEM nor a DER certificate") from err


def pem_certificate_count(data: bytes) -> int:
    """How many PEM certificates `data` holds, counted without parsing them."""
    return data.count(_PEM_MARKER)


def certificates_to_pem(certificates: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def fingerprint_sha256(certificate: x509.Certificate) -> str:
    """Lower-case hex without separators, as `openssl x509 -fingerprint` without colons."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def serial_hex(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def is_self_issued(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def not_before(certificate: x509.Certificate) -> datetime.datetime:
    return certificate.not_valid_before_utc


def not_after(certificate: x509.Certificate) -> datetime.datetime:
    return certificate.not_valid_after_utc


def chain_problem(
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    now: datetime.datetime,
) -> str | None:
    """Why `chain` (leaf first, then intermediates) does not lead to one of
    `trust_anchors` at `now`, or None when it does.

    Checks issuer names, signatures, validity periods and that every issuer is
    a CA; no policy or name-constraint processing. Enough to answer "was this
    signed by that CA and is it usable now", which is what callers ask.
    """
    if not chain:
        return "no certificate"
    pool = list(chain[1:]) + list(trust_anchors)
    anchors = {fingerprint_sha256(a) for a in trust_anchors}
    current = chain[0]
    for _ in range(len(pool) + 1):
        name = current.subject.rfc4514_string()
        if not not_before(current) <= now <= not_after(current):
            return f"certificate {name!r} is outside its validity period"
        if fingerprint_sha256(current) in anchors:
            return None
        issuer = _find_issuer(current, pool)
        if issuer is None:
            return (
                f"no trusted issuer found for {name!r} (issuer {current.issuer.rfc4514_string()!r})"
            )
        if issuer == current:
            return f"self-signed {name!r} is not a trust anchor"
        current = issuer
    return "the chain is too long or loops"


def _find_issuer(
    certificate: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    for candidate in candidates:
        if candidate.subject != certificate.issuer or not is_ca(candidate):
            continue
        try:
            certificate.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    if is_self_issued(certificate):
        try:
            certificate.verify_directly_issued_by(certificate)
        except (ValueError, TypeError, InvalidSignature):
            return None
        return certificate
    return None
