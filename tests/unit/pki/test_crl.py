from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from mtls_operator.pki import (
    CAError,
    CAProblem,
    CertificateAuthority,
    CRLFacts,
    CRLLoadError,
    KeyAlgorithm,
    KeySpec,
    Revocation,
    RevocationReason,
    crl_facts,
    crl_to_pem,
    live,
    load_ca,
    sign_crl,
)
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.crl import MAX_TWENTY_OCTETS
from mtls_operator.pki.keys import private_key_to_pem

from support.authorities import (
    ca_key_usage,
    intermediate_authority,
    make_ca,
    plain_certificate,
)
from support.clock import NOW
from support.der import SEQUENCE, encode, split_first
from support.x509_checks import assert_is_crl

td = datetime.timedelta
DAY = td(days=1)
REVOKED_AT = NOW - td(hours=1)
NOT_AFTER = NOW + td(days=30)
UTC_TIME = 0x17
# The digest each CA key signs its CRLs with: the same as its leaves.
DIGESTS: list[tuple[KeySpec, type[hashes.HashAlgorithm] | None]] = [
    (KeySpec(), hashes.SHA256),
    (KeySpec(KeyAlgorithm.ECDSA, 384), hashes.SHA384),
    (KeySpec(KeyAlgorithm.ECDSA, 521), hashes.SHA512),
    (KeySpec(KeyAlgorithm.RSA, 2048), hashes.SHA256),
    (KeySpec(KeyAlgorithm.ED25519, None), None),
]


def revocation(
    serial: int = 0x1F,
    reason: RevocationReason = RevocationReason.KEY_COMPROMISE,
    *,
    revoked_at: datetime.datetime = REVOKED_AT,
    not_after: datetime.datetime = NOT_AFTER,
) -> Revocation:
    return Revocation(serial, revoked_at, reason, not_after)


def signed(ca: CertificateAuthority, revocations: list[Revocation], **kwargs: Any) -> bytes:
    options: dict[str, Any] = {"number": 1, "this_update": NOW, "next_update": NOW + DAY}
    return sign_crl(ca, revocations, **(options | kwargs))


def every_reason() -> list[Revocation]:
    return [revocation(serial, reason) for serial, reason in enumerate(RevocationReason, 1)]


@pytest.mark.parametrize(("spec", "digest"), DIGESTS, ids=lambda v: str(v) if v else "none")
def test_crl_profile_for_every_ca_key(
    spec: KeySpec, digest: type[hashes.HashAlgorithm] | None
) -> None:
    ca = make_ca(spec)
    der = signed(ca, every_reason(), number=42)
    crl = x509.load_der_x509_crl(der)
    assert_is_crl(crl, ca.certificate)
    if digest is None:
        assert crl.signature_hash_algorithm is None
    else:
        assert isinstance(crl.signature_hash_algorithm, digest)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 42
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + DAY
    assert [entry.serial_number for entry in crl] == [1, 2, 3, 4, 5]
    assert {entry.revocation_date_utc for entry in crl} == {REVOKED_AT}


def test_a_crl_of_an_intermediate_names_the_intermediate(ecdsa_ca: CertificateAuthority) -> None:
    intermediate = intermediate_authority(ecdsa_ca)
    crl = x509.load_der_x509_crl(signed(intermediate, [revocation()]))
    assert_is_crl(crl, intermediate.certificate)
    assert crl.issuer != ecdsa_ca.certificate.subject
    assert not crl.is_signature_valid(ecdsa_ca.private_key.public_key())


@pytest.mark.parametrize(
    ("reason", "reason_code"),
    [
        (RevocationReason.UNSPECIFIED, None),
        (RevocationReason.KEY_COMPROMISE, x509.ReasonFlags.key_compromise),
        (RevocationReason.AFFILIATION_CHANGED, x509.ReasonFlags.affiliation_changed),
        (RevocationReason.SUPERSEDED, x509.ReasonFlags.superseded),
        (RevocationReason.CESSATION_OF_OPERATION, x509.ReasonFlags.cessation_of_operation),
    ],
    ids=lambda v: getattr(v, "value", "absent"),
)
def test_reason_code_is_given_unless_unspecified(
    ecdsa_ca: CertificateAuthority,
    reason: RevocationReason,
    reason_code: x509.ReasonFlags | None,
) -> None:
    crl = x509.load_der_x509_crl(signed(ecdsa_ca, [revocation(reason=reason)]))
    (entry,) = list(crl)
    if reason_code is None:
        assert list(entry.extensions) == []
        return
    (extension,) = list(entry.extensions)
    assert not extension.critical
    assert extension.value == x509.CRLReason(reason_code)


def test_reasons_are_named_as_in_rfc_5280() -> None:
    assert RevocationReason("keyCompromise") is RevocationReason.KEY_COMPROMISE
    assert [r.value for r in RevocationReason] == [
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
    ]


@pytest.mark.parametrize("spec", [KeySpec(), KeySpec(KeyAlgorithm.ED25519, None)], ids=str)
def test_the_same_revocations_in_any_order_sign_the_same_list(spec: KeySpec) -> None:
    ca = make_ca(spec)
    serials = [0xFFFF, 3, 2**158, 0x1F, 7]
    first = x509.load_der_x509_crl(signed(ca, [revocation(s) for s in serials]))
    second = x509.load_der_x509_crl(signed(ca, [revocation(s) for s in reversed(serials)]))
    assert first.tbs_certlist_bytes == second.tbs_certlist_bytes
    assert [e.serial_number for e in first] == [3, 7, 0x1F, 0xFFFF, 2**158]


def test_an_empty_crl_has_no_entries(ecdsa_ca: CertificateAuthority) -> None:
    crl = x509.load_der_x509_crl(signed(ecdsa_ca, []))
    assert_is_crl(crl, ecdsa_ca.certificate)
    assert len(crl) == 0


def test_times_are_utc_whole_seconds(ecdsa_ca: CertificateAuthority) -> None:
    berlin = datetime.timezone(td(hours=1))
    this_update = (NOW + td(microseconds=900_000)).astimezone(berlin)
    revoked_at = (NOW - td(minutes=2, microseconds=1)).astimezone(berlin)
    der = signed(
        ecdsa_ca,
        [revocation(revoked_at=revoked_at)],
        this_update=this_update,
        next_update=this_update + DAY,
    )
    crl = x509.load_der_x509_crl(der)
    assert crl.last_update_utc == NOW
    assert crl.next_update_utc == NOW + DAY
    assert [e.revocation_date_utc for e in crl] == [NOW - td(minutes=2, seconds=1)]


SIGN_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"number": -1}, "number must be a non-negative integer of at most 20 octets, not -1"),
    (
        {"number": MAX_TWENTY_OCTETS + 1},
        f"number must be a non-negative integer of at most 20 octets, not {2**159}",
    ),
    (
        {"next_update": NOW},
        "next_update 2026-11-28T12:00:00+00:00 must be after this_update 2026-11-28T12:00:00+00:00",
    ),
    (
        {"next_update": NOW - DAY},
        "next_update 2026-11-27T12:00:00+00:00 must be after this_update 2026-11-28T12:00:00+00:00",
    ),
    (
        # Equal once cut to the seconds that X.509 encodes.
        {"next_update": NOW + td(microseconds=999_999)},
        "next_update 2026-11-28T12:00:00+00:00 must be after this_update 2026-11-28T12:00:00+00:00",
    ),
    (
        {"this_update": datetime.datetime(2026, 11, 28, 12)},
        "this_update must be a timezone-aware time, not 2026-11-28T12:00:00",
    ),
    (
        {"next_update": datetime.datetime(2026, 11, 29, 12)},
        "next_update must be a timezone-aware time, not 2026-11-29T12:00:00",
    ),
]


@pytest.mark.parametrize(("options", "message"), SIGN_ERRORS, ids=lambda v: str(v)[:60])
def test_bad_crl_input_is_refused_in_one_line(
    ecdsa_ca: CertificateAuthority, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        signed(ecdsa_ca, [revocation()], **options)


def test_a_serial_revoked_twice_is_refused(ecdsa_ca: CertificateAuthority) -> None:
    twice = [revocation(0xAB), revocation(7), revocation(0xAB, RevocationReason.SUPERSEDED)]
    message = "serial_number ab (hex) is revoked twice; a CRL lists each certificate once"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        signed(ecdsa_ca, twice)


REVOCATION_ERRORS: list[tuple[dict[str, Any], str]] = [
    ({"serial": 0}, "serial_number must be a positive integer of at most 20 octets, not 0"),
    ({"serial": -5}, "serial_number must be a positive integer of at most 20 octets, not -5"),
    (
        {"serial": 2**159},
        f"serial_number must be a positive integer of at most 20 octets, not {2**159}",
    ),
    (
        {"revoked_at": datetime.datetime(2026, 11, 28, 11)},
        "revoked_at must be a timezone-aware time, not 2026-11-28T11:00:00",
    ),
    (
        {"not_after": datetime.datetime(2026, 12, 28)},
        "not_after must be a timezone-aware time, not 2026-12-28T00:00:00",
    ),
]


@pytest.mark.parametrize(("fields", "message"), REVOCATION_ERRORS, ids=lambda v: str(v)[:40])
def test_bad_revocations_are_refused_in_one_line(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        revocation(**fields)


def test_the_largest_serial_and_number_are_accepted(ecdsa_ca: CertificateAuthority) -> None:
    der = signed(ecdsa_ca, [revocation(MAX_TWENTY_OCTETS)], number=MAX_TWENTY_OCTETS)
    assert crl_facts(der).serial_numbers == (MAX_TWENTY_OCTETS,)
    assert crl_facts(der).number == MAX_TWENTY_OCTETS


def test_a_ca_without_crl_sign_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = plain_certificate(
        key,
        NOW,
        ca=True,
        common_name="No CRLs CA",
        key_usage=ca_key_usage(crl_sign=False),
    )
    ca = load_ca(certificates_to_pem([certificate]), private_key_to_pem(key), NOW)
    with pytest.raises(CAError) as raised:
        signed(ca, [revocation()])
    assert raised.value.problem is CAProblem.NOT_A_CA
    assert str(raised.value) == (
        "the CA 'CN=No CRLs CA' has a keyUsage without cRLSign, so it cannot sign CRLs"
    )


# crl_period is one day; each case: the certificate's notAfter relative to now.
LIVE_CASES = [
    ("not expired", td(days=30), True),
    ("expires now", td(0), True),
    ("expired less than a period ago", -td(hours=23), True),
    ("expired exactly a period ago", -DAY, True),
    ("expired a second more than a period ago", -DAY - td(seconds=1), False),
    ("expired long ago", -td(days=400), False),
]


@pytest.mark.parametrize(
    ("case", "not_after", "listed"), LIVE_CASES, ids=[case for case, _, _ in LIVE_CASES]
)
def test_an_entry_stays_one_crl_period_past_its_certificates_expiry(
    case: str, not_after: td, listed: bool
) -> None:
    entry = revocation(not_after=NOW + not_after)
    assert live([entry], NOW, crl_period=DAY) == ((entry,) if listed else ())


def test_live_keeps_the_order_given() -> None:
    entries = [
        revocation(9),
        revocation(2, not_after=NOW - td(days=3)),
        revocation(5),
        revocation(1),
    ]
    assert live(entries, NOW, crl_period=DAY) == (entries[0], entries[2], entries[3])


@pytest.mark.parametrize(
    ("now", "period", "message"),
    [
        (NOW, td(0), "crl_period must be positive, not 0:00:00"),
        (NOW, -DAY, "crl_period must be positive, not -1 day, 0:00:00"),
        (
            datetime.datetime(2026, 11, 28),
            DAY,
            "now must be a timezone-aware time, not 2026-11-28T00:00:00",
        ),
    ],
)
def test_live_refuses_bad_input(now: datetime.datetime, period: td, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        live([revocation()], now, crl_period=period)


def test_facts_read_back_what_was_signed(ecdsa_ca: CertificateAuthority) -> None:
    der = signed(
        ecdsa_ca,
        [revocation(0xBEEF), revocation(3, RevocationReason.UNSPECIFIED)],
        number=12,
        next_update=NOW + td(hours=6),
    )
    expected = CRLFacts(
        number=12,
        this_update=NOW,
        next_update=NOW + td(hours=6),
        serial_numbers=(3, 0xBEEF),
        authority_key_id=ecdsa_ca.key_identifier,
    )
    assert crl_facts(der) == expected
    pem = crl_to_pem(der)
    assert pem.startswith(b"-----BEGIN X509 CRL-----\n")
    assert pem.endswith(b"-----END X509 CRL-----\n")
    assert crl_facts(pem) == expected


def _foreign_crl() -> bytes:
    """A CRL signed elsewhere without a CRL Number (the signature does not matter)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Elsewhere")]))
        .last_update(NOW)
        .next_update(NOW + DAY)
    )
    return builder.sign(make_ca().private_key, hashes.SHA256()).public_bytes(Encoding.DER)


def _without_next_update(der: bytes) -> bytes:
    """`der` with its nextUpdate cut out, which `cryptography` cannot build
    although RFC 5280 makes the field optional. The signature no longer
    matches, which reading the facts does not check."""
    next_update = encode(UTC_TIME, (NOW + DAY).strftime("%y%m%d%H%M%SZ").encode())
    _, crl, _ = split_first(der)
    _, tbs, signature = split_first(crl)
    assert tbs.count(next_update) == 1
    return encode(SEQUENCE, encode(SEQUENCE, tbs.replace(next_update, b"")) + signature)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the CRL data is empty"),
        (b"  \n", "the CRL data is empty"),
        (b"\x30\x03\x02\x01\x01", "the data is neither a PEM nor a DER CRL"),
        (
            b"-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n",
            "the data is neither a PEM nor a DER CRL",
        ),
        (_foreign_crl(), "the CRL has no CRL Number extension"),
        (
            _without_next_update(signed(make_ca(), [revocation()])),
            "the CRL has no nextUpdate",
        ),
    ],
    ids=["empty", "blank", "not a CRL", "bad PEM", "no number", "no nextUpdate"],
)
def test_facts_of_unusable_data_say_why(data: bytes, message: str) -> None:
    with pytest.raises(CRLLoadError) as raised:
        crl_facts(data)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_a_certificate_is_not_a_crl(ecdsa_ca: CertificateAuthority) -> None:
    with pytest.raises(CRLLoadError):
        crl_facts(ecdsa_ca.trust_bundle_pem)
    with pytest.raises(CRLLoadError):
        crl_to_pem(b"\x00")
