from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mtls_operator.pki import (
    CAError,
    CAProblem,
    KeyAlgorithm,
    KeySpec,
    create_root_ca,
    load_ca,
)
from mtls_operator.pki.ca import MAX_CA_CERTIFICATES
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import private_key_to_pem
from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE

from support.authorities import intermediate_ca, make_ca, plain_certificate
from support.clock import NOW
from support.x509_checks import assert_is_root_ca

td = datetime.timedelta


@pytest.mark.parametrize(
    "spec",
    [
        KeySpec(),
        KeySpec(KeyAlgorithm.ECDSA, 384),
        KeySpec(KeyAlgorithm.RSA, 2048),
        KeySpec(KeyAlgorithm.ED25519, None),
    ],
    ids=str,
)
def test_root_ca_profile(spec: KeySpec) -> None:
    key = spec.generate()
    certificate = create_root_ca(key, "My-CA", NOW)
    assert_is_root_ca(certificate)
    assert certificate.subject.rfc4514_string() == "CN=My-CA"
    assert certificate.not_valid_before_utc == NOW - CLOCK_SKEW_BACKDATE
    assert certificate.not_valid_after_utc == NOW + td(days=3650)


def _pems(
    certificates: list[x509.Certificate], key: ec.EllipticCurvePrivateKey
) -> tuple[bytes, bytes]:
    return certificates_to_pem(certificates), private_key_to_pem(key)


def test_loads_a_root_as_its_own_trust_bundle() -> None:
    ca = make_ca()
    assert ca.intermediates == ()
    assert ca.trust_bundle == (ca.certificate,)
    assert ca.trust_bundle_pem == certificates_to_pem([ca.certificate])


def test_loads_an_intermediate_with_its_chain() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = create_root_ca(root_key, "Root", NOW)
    intermediate, key = intermediate_ca(root, root_key, NOW)
    ca = load_ca(*_pems([intermediate, root], key), NOW)
    assert ca.certificate == intermediate
    assert ca.intermediates == (intermediate,)
    assert ca.trust_bundle == (root,)


def test_intermediate_alone_needs_a_bundle_that_reaches_its_root() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = create_root_ca(root_key, "Root", NOW)
    intermediate, key = intermediate_ca(root, root_key, NOW)
    other_root = create_root_ca(ec.generate_private_key(ec.SECP256R1()), "Other Root", NOW)
    with pytest.raises(CAError, match="trust bundle does not verify") as caught:
        load_ca(
            *_pems([intermediate], key), NOW, trust_bundle_pem=certificates_to_pem([other_root])
        )
    assert caught.value.problem is CAProblem.INCOMPLETE
    ca = load_ca(
        *_pems([intermediate], key), NOW, trust_bundle_pem=certificates_to_pem([other_root, root])
    )
    assert ca.trust_bundle == (other_root, root)


def test_signing_certificate_is_the_one_matching_the_key() -> None:
    """A ca.crt with the next root added first (step 1 of a CA rotation)
    still signs with the current root and trusts both."""
    old_key = ec.generate_private_key(ec.SECP256R1())
    old_root = create_root_ca(old_key, "Old Root", NOW)
    new_root = create_root_ca(ec.generate_private_key(ec.SECP256R1()), "New Root", NOW)
    ca = load_ca(*_pems([new_root, old_root], old_key), NOW)
    assert ca.certificate == old_root
    assert ca.trust_bundle == (new_root, old_root)


@pytest.mark.parametrize(
    ("certificate_pem", "problem", "message"),
    [
        (b"not a certificate", CAProblem.NOT_PEM, "neither a PEM nor a DER"),
        (
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            CAProblem.NOT_PEM,
            "malformed",
        ),
        (b"", CAProblem.NOT_PEM, "empty"),
    ],
)
def test_unreadable_certificate(certificate_pem: bytes, problem: CAProblem, message: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(CAError, match=message) as caught:
        load_ca(certificate_pem, private_key_to_pem(key), NOW)
    assert caught.value.problem is problem


def test_a_ca_certificate_file_of_more_certificates_than_a_chain_needs() -> None:
    # Finding the CA's path through them would be quadratic in their number
    # (a Secret holds about 1,700 small ones): they are counted before
    # anything else, even before they are parsed.
    ca = make_ca()
    too_many = certificates_to_pem([ca.certificate] * (MAX_CA_CERTIFICATES + 1))
    unparsed = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" * (
        MAX_CA_CERTIFICATES + 1
    )
    for pem in (too_many, unparsed):
        with pytest.raises(CAError) as caught:
            load_ca(pem, private_key_to_pem(ca.private_key), NOW)
        assert caught.value.problem is CAProblem.TOO_LARGE
        assert str(caught.value) == (
            f"the CA certificate holds {MAX_CA_CERTIFICATES + 1} certificates, more than the "
            f"{MAX_CA_CERTIFICATES} accepted (a bundle of roots belongs in ca.crt)"
        )
    at_most = [ca.certificate] * MAX_CA_CERTIFICATES
    assert load_ca(certificates_to_pem(at_most), private_key_to_pem(ca.private_key), NOW)


def test_key_that_does_not_match() -> None:
    ca = make_ca()
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(
        CAError, match="does not match the CA certificate 'CN=Test Root CA'"
    ) as caught:
        load_ca(certificates_to_pem([ca.certificate]), private_key_to_pem(other), NOW)
    assert caught.value.problem is CAProblem.KEY_MISMATCH


def test_certificate_without_ca_true_is_not_a_ca() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for ca_flag in (False, None):
        leaf = plain_certificate(key, NOW, ca=ca_flag)
        with pytest.raises(CAError, match="is not a CA certificate") as caught:
            load_ca(*_pems([leaf], key), NOW)
        assert caught.value.problem is CAProblem.NOT_A_CA


def test_ca_whose_key_usage_forbids_signing_certificates() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(True, False, False, False, False, False, True, False, False)
    certificate = plain_certificate(key, NOW, ca=True, key_usage=usage)
    with pytest.raises(CAError, match="without keyCertSign") as caught:
        load_ca(*_pems([certificate], key), NOW)
    assert caught.value.problem is CAProblem.NOT_A_CA


def test_ca_without_key_usage_is_accepted_like_openssl_req_x509() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = plain_certificate(key, NOW, ca=True)
    assert load_ca(*_pems([certificate], key), NOW).certificate == certificate


def test_expired_ca() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = plain_certificate(key, NOW, ca=True, not_after=NOW - td(seconds=1))
    with pytest.raises(CAError, match="expired at") as caught:
        load_ca(*_pems([certificate], key), NOW)
    assert caught.value.problem is CAProblem.EXPIRED


def test_encrypted_ca_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = create_root_ca(key, "Encrypted", NOW)
    pem = private_key_to_pem(key, passphrase=b"s3cret")
    cert_pem = certificates_to_pem([certificate])
    assert load_ca(cert_pem, pem, NOW, passphrase=b"s3cret").certificate == certificate
    with pytest.raises(CAError, match="no passphrase") as missing:
        load_ca(cert_pem, pem, NOW)
    assert missing.value.problem is CAProblem.KEY_UNREADABLE
    with pytest.raises(CAError, match="wrong passphrase") as wrong:
        load_ca(cert_pem, pem, NOW, passphrase=b"guess")
    assert wrong.value.problem is CAProblem.KEY_UNREADABLE
