"""Certificate revocation lists: which revocations a CRL must still list,
signing an RFC 5280 v2 CRL with a CA, and reading back what a CRL says."""

from __future__ import annotations

import datetime
import enum
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtls_operator.pki.ca import CertificateAuthority
from mtls_operator.pki.errors import CAError, CAProblem, CRLLoadError
from mtls_operator.pki.keys import signature_hash

# RFC 5280 4.1.2.2 and 5.2.3: serials are positive, CRL numbers not negative,
# and neither is longer than 20 octets.
MAX_TWENTY_OCTETS = 2**159 - 1
_PEM_MARKER = b"-----BEGIN X509 CRL-----"


class RevocationReason(enum.Enum):
    """The RFC 5280 5.3.1 reason codes the product gives, by their ASN.1 names."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"

    @property
    def flag(self) -> x509.ReasonFlags | None:
        """What the entry's reasonCode extension holds: nothing for
        unspecified, which RFC 5280 5.3.1 says to express by leaving it out."""
        if self is RevocationReason.UNSPECIFIED:
            return None
        return x509.ReasonFlags(self.value)


@dataclass(frozen=True)
class Revocation:
    """One revoked certificate, as a CRL entry and as long as it must stay listed."""

    serial_number: int
    revoked_at: datetime.datetime
    reason: RevocationReason
    # The revoked certificate's own notAfter: it decides when the entry may go.
    not_after: datetime.datetime

    def __post_init__(self) -> None:
        if not 0 < self.serial_number <= MAX_TWENTY_OCTETS:
            raise ValueError(
                f"serial_number must be a positive integer of at most 20 octets, "
                f"not {self.serial_number}"
            )
        _require_aware("revoked_at", self.revoked_at)
        _require_aware("not_after", self.not_after)


def live(
    revocations: Iterable[Revocation],
    now: datetime.datetime,
    *,
    crl_period: datetime.timedelta,
) -> tuple[Revocation, ...]:
    """The revocations that a CRL signed at `now` must still list.

    RFC 5280 5.1.2.6 lets an entry go once its certificate has expired, but
    only after it "appears on one regularly scheduled CRL issued beyond the
    revoked certificate's validity period". When a CRL is signed at least
    every `crl_period`, one is signed within `crl_period` after any notAfter,
    so an entry stays until `crl_period` has passed since its notAfter.
    """
    _require_aware("now", now)
    if crl_period <= datetime.timedelta(0):
        raise ValueError(f"crl_period must be positive, not {crl_period}")
    return tuple(r for r in revocations if now <= r.not_after + crl_period)


def sign_crl(
    ca: CertificateAuthority,
    revocations: Iterable[Revocation],
    *,
    number: int,
    this_update: datetime.datetime,
    next_update: datetime.datetime,
) -> bytes:
    """An RFC 5280 v2 CRL (DER) of `revocations`, signed by `ca` with the
    digest its leaves get (none for Ed25519).

    The issuer is the CA's subject; the CRL Number and the Authority Key
    Identifier (the CA's subject key identifier, as in its leaves) are the
    two extensions RFC 5280 5.2 requires, both non-critical. Entries come in
    ascending serial order, so that the same input signs the same list, each
    with a non-critical reasonCode unless the reason is unspecified. Times are
    cut to whole seconds, which is all X.509 encodes.
    """
    this_update = _whole_seconds("this_update", this_update)
    next_update = _whole_seconds("next_update", next_update)
    if not 0 <= number <= MAX_TWENTY_OCTETS:
        raise ValueError(
            f"number must be a non-negative integer of at most 20 octets, not {number}"
        )
    if next_update <= this_update:
        raise ValueError(
            f"next_update {next_update.isoformat()} must be after "
            f"this_update {this_update.isoformat()}"
        )
    _require_crl_sign(ca)
    entries = sorted(revocations, key=lambda r: r.serial_number)
    _refuse_repeated_serials(entries)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(ca.authority_key_identifier, critical=False)
    )
    for revocation in entries:
        builder = builder.add_revoked_certificate(_entry(revocation))
    crl = builder.sign(ca.private_key, signature_hash(ca.private_key))
    return crl.public_bytes(serialization.Encoding.DER)


def crl_to_pem(der: bytes) -> bytes:
    """The PEM text (`-----BEGIN X509 CRL-----`) of a DER CRL."""
    return _load_crl(der).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class CRLFacts:
    """What a signed CRL says, for status and metrics (its age, the time
    left until nextUpdate)."""

    number: int
    this_update: datetime.datetime
    next_update: datetime.datetime
    # Ascending.
    serial_numbers: tuple[int, ...]
    # The signing key's identifier: which CA key signed it.
    authority_key_id: bytes | None = None


def crl_facts(data: bytes) -> CRLFacts:
    """Read back a CRL, PEM or DER. Raises CRLLoadError when it is unreadable
    or lacks a CRL Number or nextUpdate, which every CRL signed here has."""
    crl = _load_crl(data)
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise CRLLoadError("the CRL has no CRL Number extension") from None
    next_update = crl.next_update_utc
    if next_update is None:
        raise CRLLoadError("the CRL has no nextUpdate")
    try:
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        authority_key_id = aki.key_identifier
    except x509.ExtensionNotFound:
        authority_key_id = None
    return CRLFacts(
        number=number,
        this_update=crl.last_update_utc,
        next_update=next_update,
        serial_numbers=tuple(sorted(entry.serial_number for entry in crl)),
        authority_key_id=authority_key_id,
    )


def _entry(revocation: Revocation) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(revocation.serial_number)
        .revocation_date(_whole_seconds("revoked_at", revocation.revoked_at))
    )
    flag = revocation.reason.flag
    if flag is not None:
        builder = builder.add_extension(x509.CRLReason(flag), critical=False)
    return builder.build()


def _load_crl(data: bytes) -> x509.CertificateRevocationList:
    if not data.strip():
        raise CRLLoadError("the CRL data is empty")
    try:
        if _PEM_MARKER in data:
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as err:
        raise CRLLoadError(f"the data is neither a PEM nor a DER CRL: {err}") from err


def _require_crl_sign(ca: CertificateAuthority) -> None:
    # Relying parties (OpenSSL among them) refuse a CRL whose issuer's keyUsage
    # lacks cRLSign: better no CRL than one that makes every handshake fail.
    try:
        usage = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return  # RFC 5280 allows a CA without keyUsage (the openssl recipe's CA)
    if not usage.crl_sign:
        raise CAError(
            CAProblem.NOT_A_CA,
            f"the CA {ca.subject!r} has a keyUsage without cRLSign, so it cannot sign CRLs",
        )


def _refuse_repeated_serials(entries: Sequence[Revocation]) -> None:
    for previous, current in itertools.pairwise(entries):
        if previous.serial_number == current.serial_number:
            raise ValueError(
                f"serial_number {current.serial_number:x} (hex) is revoked twice; "
                "a CRL lists each certificate once"
            )


def _require_aware(field: str, value: datetime.datetime) -> None:
    # A naive time would be read as UTC by `cryptography` and as local time by
    # the caller: refuse it rather than sign a CRL that is off by hours.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be a timezone-aware time, not {value.isoformat()}")


def _whole_seconds(field: str, value: datetime.datetime) -> datetime.datetime:
    _require_aware(field, value)
    return value.astimezone(datetime.UTC).replace(microsecond=0)
