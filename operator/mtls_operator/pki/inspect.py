"""What a certificate says, in plain terms: for `mtls-operator inspect` and status."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mtls_operator.pki.certs import (
    chain_problem,
    fingerprint_sha256,
    is_ca,
    is_self_issued,
    not_after,
    not_before,
    serial_hex,
)
from mtls_operator.pki.keys import PublicKey, key_spec_of

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_KEY_USAGE_NAMES = (
    ("digital_signature", "digitalSignature"),
    ("content_commitment", "nonRepudiation"),
    ("key_encipherment", "keyEncipherment"),
    ("data_encipherment", "dataEncipherment"),
    ("key_agreement", "keyAgreement"),
    ("key_cert_sign", "keyCertSign"),
    ("crl_sign", "cRLSign"),
)
_SECONDS_PER_DAY = 86400
# Where camelCase of the field name is not what Kubernetes would write.
_JSON_KEYS = {"is_ca": "isCA", "fingerprint_sha256": "fingerprintSHA256"}
_Extension = TypeVar("_Extension", bound=x509.ExtensionType)


@dataclass(frozen=True)
class CertificateReport:
    subject: str
    issuer: str
    serial_number: str
    fingerprint_sha256: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    days_left: float
    is_ca: bool
    key: str
    key_usages: tuple[str, ...]
    extended_key_usages: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    uris: tuple[str, ...]
    email_addresses: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """camelCase keys, as Kubernetes and `status -o json` write them."""
        data = asdict(self)
        data["not_before"] = self.not_before.isoformat()
        data["not_after"] = self.not_after.isoformat()
        data["days_left"] = round(self.days_left, 2)
        return {
            _JSON_KEYS.get(key, _camel(key)): list(v) if isinstance(v, tuple) else v
            for key, v in data.items()
        }


def inspect_certificate(certificate: x509.Certificate, now: datetime.datetime) -> CertificateReport:
    public_key = certificate.public_key()
    key = str(key_spec_of(public_key)) if isinstance(public_key, PublicKey) else "unsupported"
    alt_names = _extension(certificate, x509.SubjectAlternativeName)
    return CertificateReport(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial_number=serial_hex(certificate),
        fingerprint_sha256=fingerprint_sha256(certificate),
        not_before=not_before(certificate),
        not_after=not_after(certificate),
        days_left=(not_after(certificate) - now).total_seconds() / _SECONDS_PER_DAY,
        is_ca=is_ca(certificate),
        key=key,
        key_usages=_key_usages(certificate),
        extended_key_usages=_extended_key_usages(certificate),
        dns_names=tuple(alt_names.get_values_for_type(x509.DNSName)) if alt_names else (),
        ip_addresses=(
            tuple(str(ip) for ip in alt_names.get_values_for_type(x509.IPAddress))
            if alt_names
            else ()
        ),
        uris=(
            tuple(alt_names.get_values_for_type(x509.UniformResourceIdentifier))
            if alt_names
            else ()
        ),
        email_addresses=tuple(alt_names.get_values_for_type(x509.RFC822Name)) if alt_names else (),
    )


@dataclass(frozen=True)
class ChainReport:
    certificates: tuple[CertificateReport, ...]
    # What the chain was checked against; None when there was nothing to check against.
    checked_against: str | None
    # None: chains to the trust anchors (or was not checked); otherwise why not.
    chain_problem: str | None

    @property
    def chain_valid(self) -> bool | None:
        if self.checked_against is None:
            return None
        return self.chain_problem is None

    def to_json(self) -> dict[str, Any]:
        return {
            "certificates": [c.to_json() for c in self.certificates],
            "chain": {
                "valid": self.chain_valid,
                "problem": self.chain_problem,
                "checkedAgainst": self.checked_against,
            },
        }


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def inspect_chain(
    chain: Sequence[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate] | None,
    now: datetime.datetime,
) -> ChainReport:
    """Describe every certificate and check that the first one chains to
    `trust_anchors`; without anchors, to the input's last certificate when
    that is a self-signed CA (a full chain), else leave the chain unchecked."""
    reports = tuple(inspect_certificate(c, now) for c in chain)
    if trust_anchors:
        return ChainReport(reports, "the given CA bundle", chain_problem(chain, trust_anchors, now))
    top = chain[-1]
    if len(chain) > 1 and is_ca(top) and is_self_issued(top):
        return ChainReport(
            reports, "the root at the end of the input", chain_problem(chain, [top], now)
        )
    return ChainReport(reports, None, None)


def _extension(certificate: x509.Certificate, kind: type[_Extension]) -> _Extension | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _key_usages(certificate: x509.Certificate) -> tuple[str, ...]:
    usage = _extension(certificate, x509.KeyUsage)
    if usage is None:
        return ()
    return tuple(name for attribute, name in _KEY_USAGE_NAMES if getattr(usage, attribute))


def _extended_key_usages(certificate: x509.Certificate) -> tuple[str, ...]:
    usages = _extension(certificate, x509.ExtendedKeyUsage)
    if usages is None:
        return ()
    return tuple(_EKU_NAMES.get(oid, oid.dotted_string) for oid in usages)
