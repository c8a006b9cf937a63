from __future__ import annotations

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from mtls_operator.pki import (
    CertificateAuthority,
    DistinguishedName,
    KeyAlgorithm,
    KeySpec,
    LeafRequest,
    SubjectAltNames,
    Usage,
    create_root_ca,
    issue_leaf,
    load_ca,
)
from mtls_operator.pki.certs import certificates_to_pem, load_certificates
from mtls_operator.pki.keys import private_key_to_pem
from mtls_operator.pki.validity import CLOCK_SKEW_BACKDATE

from support.authorities import intermediate_ca, make_ca
from support.clock import NOW
from support.x509_checks import alt_names, assert_is_leaf

td = datetime.timedelta
KEY_SPECS = [
    KeySpec(),
    KeySpec(KeyAlgorithm.ECDSA, 384),
    KeySpec(KeyAlgorithm.RSA, 2048),
    KeySpec(KeyAlgorithm.ED25519, None),
]


def request(usage: Usage = Usage.SERVER, **kwargs: object) -> LeafRequest:
    subject = kwargs.pop("subject", DistinguishedName(common_name="payments.shop.svc"))
    return LeafRequest(usage=usage, subject=subject, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("usage", list(Usage), ids=lambda u: u.value)
@pytest.mark.parametrize("spec", KEY_SPECS, ids=str)
def test_every_profile_and_key(ecdsa_ca: CertificateAuthority, usage: Usage, spec: KeySpec) -> None:
    key = spec.generate()
    issued = issue_leaf(ecdsa_ca, request(usage), key.public_key(), NOW)
    assert_is_leaf(issued.certificate, ecdsa_ca.certificate, usage)
    assert issued.intermediates == ()
    assert issued.clamped_to_ca is False


@pytest.mark.parametrize("spec", KEY_SPECS, ids=str)
def test_every_ca_key_can_sign(spec: KeySpec) -> None:
    ca = make_ca(spec)
    issued = issue_leaf(ca, request(), KeySpec().generate().public_key(), NOW)
    assert_is_leaf(issued.certificate, ca.certificate, Usage.SERVER)


def test_validity_is_backdated_and_lasts_the_lifetime(ecdsa_ca: CertificateAuthority) -> None:
    issued = issue_leaf(
        ecdsa_ca, request(lifetime=td(days=90)), KeySpec().generate().public_key(), NOW
    )
    assert issued.certificate.not_valid_before_utc == NOW - CLOCK_SKEW_BACKDATE
    assert issued.certificate.not_valid_after_utc == NOW + td(days=90)


def test_not_after_is_clamped_to_the_ca() -> None:
    ca = make_ca(lifetime=td(days=30))
    issued = issue_leaf(ca, request(lifetime=td(days=365)), KeySpec().generate().public_key(), NOW)
    assert issued.clamped_to_ca is True
    assert issued.certificate.not_valid_after_utc == ca.not_after


def test_serials_are_random_and_159_bits(ecdsa_ca: CertificateAuthority) -> None:
    public_key = KeySpec().generate().public_key()
    serials = {
        issue_leaf(ecdsa_ca, request(), public_key, NOW).certificate.serial_number
        for _ in range(20)
    }
    assert len(serials) == 20
    assert all(0 < s < 2**159 for s in serials)


@pytest.mark.parametrize(
    ("usage", "common_name", "given", "expected"),
    [
        (Usage.SERVER, "payments.shop.svc", SubjectAltNames(), ["DNSName:payments.shop.svc"]),
        (Usage.BOTH, "Payments.Shop.svc", SubjectAltNames(), ["DNSName:payments.shop.svc"]),
        (
            Usage.SERVER,
            "payments",
            SubjectAltNames(dns_names=("payments.shop.svc",)),
            ["DNSName:payments", "DNSName:payments.shop.svc"],
        ),
        (
            Usage.SERVER,
            "payments.shop.svc",
            SubjectAltNames(dns_names=("payments.shop.svc",)),
            ["DNSName:payments.shop.svc"],
        ),
        (Usage.SERVER, "10.0.0.12", SubjectAltNames(), ["IPAddress:10.0.0.12"]),
        (Usage.SERVER, "Payments Service", SubjectAltNames(), []),
        (Usage.CLIENT, "client-1.shop", SubjectAltNames(), []),
        (
            Usage.SERVER,
            "api.example.com",
            SubjectAltNames(
                ip_addresses=(ipaddress.ip_address("::1"),),
                uris=("spiffe://cluster.local/ns/shop/sa/api",),
                email_addresses=("ops@example.com",),
            ),
            [
                "DNSName:api.example.com",
                "IPAddress:::1",
                "UniformResourceIdentifier:spiffe://cluster.local/ns/shop/sa/api",
                "RFC822Name:ops@example.com",
            ],
        ),
    ],
)
def test_server_common_name_is_also_in_the_san(
    ecdsa_ca: CertificateAuthority,
    usage: Usage,
    common_name: str,
    given: SubjectAltNames,
    expected: list[str],
) -> None:
    leaf = issue_leaf(
        ecdsa_ca,
        request(usage, subject=DistinguishedName(common_name=common_name), alt_names=given),
        KeySpec().generate().public_key(),
        NOW,
    ).certificate
    assert alt_names(leaf) == expected
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == common_name


def test_empty_subject_makes_the_san_critical(ecdsa_ca: CertificateAuthority) -> None:
    leaf = issue_leaf(
        ecdsa_ca,
        request(
            Usage.CLIENT,
            subject=DistinguishedName(),
            alt_names=SubjectAltNames(uris=("spiffe://td/wl",)),
        ),
        KeySpec().generate().public_key(),
        NOW,
    ).certificate
    assert len(leaf.subject) == 0
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert_is_leaf(leaf, ecdsa_ca.certificate, Usage.CLIENT)


def test_no_identity_at_all_is_refused(ecdsa_ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="common name or at least one subject alternative name"):
        issue_leaf(
            ecdsa_ca, request(subject=DistinguishedName()), KeySpec().generate().public_key(), NOW
        )


def test_full_subject_in_conventional_order(ecdsa_ca: CertificateAuthority) -> None:
    subject = DistinguishedName(
        common_name="payments",
        organizations=("Shop Ltd",),
        organizational_units=("Payments",),
        countries=("DE",),
        provinces=("Berlin",),
        localities=("Berlin",),
    )
    leaf = issue_leaf(
        ecdsa_ca, request(subject=subject), KeySpec().generate().public_key(), NOW
    ).certificate
    assert (
        leaf.subject.rfc4514_string()
        == "CN=payments,OU=Payments,O=Shop Ltd,L=Berlin,ST=Berlin,C=DE"
    )


def test_leaf_from_an_intermediate_carries_the_intermediate() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = create_root_ca(root_key, "Root", NOW)
    intermediate, key = intermediate_ca(root, root_key, NOW)
    ca = load_ca(certificates_to_pem([intermediate, root]), private_key_to_pem(key), NOW)
    issued = issue_leaf(ca, request(), KeySpec().generate().public_key(), NOW)
    assert load_certificates(issued.chain_pem) == [issued.certificate, intermediate]
    assert_is_leaf(issued.certificate, intermediate, Usage.SERVER)
