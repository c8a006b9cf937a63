from __future__ import annotations

import datetime

from mtls_operator.pki import (
    CertificateAuthority,
    DistinguishedName,
    KeyAlgorithm,
    KeySpec,
    LeafRequest,
    SubjectAltNames,
    Usage,
    inspect_chain,
    issue_leaf,
)
from mtls_operator.pki.certs import fingerprint_sha256

from support.authorities import make_ca
from support.clock import NOW

td = datetime.timedelta


def test_reports_what_the_certificate_says(ecdsa_ca: CertificateAuthority) -> None:
    leaf = issue_leaf(
        ecdsa_ca,
        LeafRequest(
            Usage.BOTH,
            DistinguishedName(common_name="api.shop"),
            SubjectAltNames(uris=("spiffe://cluster.local/ns/shop/sa/api",)),
            td(days=10),
        ),
        KeySpec(KeyAlgorithm.RSA, 2048).generate().public_key(),
        NOW,
    ).certificate
    report = inspect_chain([leaf], ecdsa_ca.trust_bundle, NOW + td(days=1))
    assert report.chain_problem is None
    (only,) = report.certificates
    assert only.subject == "CN=api.shop"
    assert only.issuer == "CN=Test Root CA"
    assert only.key == "RSA-2048"
    assert only.key_usages == ("digitalSignature", "keyEncipherment")
    assert only.extended_key_usages == ("serverAuth", "clientAuth")
    assert only.dns_names == ("api.shop",)
    assert only.uris == ("spiffe://cluster.local/ns/shop/sa/api",)
    assert only.days_left == 9.0
    assert only.is_ca is False
    assert only.fingerprint_sha256 == fingerprint_sha256(leaf)
    data = report.to_json()
    assert data["chain"]["valid"] is True
    assert data["certificates"][0]["notAfter"] == leaf.not_valid_after_utc.isoformat()


def test_chain_problems_are_named(ecdsa_ca: CertificateAuthority) -> None:
    leaf = issue_leaf(
        ecdsa_ca,
        LeafRequest(Usage.CLIENT, DistinguishedName(common_name="c"), lifetime=td(days=1)),
        KeySpec().generate().public_key(),
        NOW,
    ).certificate
    stranger = make_ca(common_name="Stranger")
    assert "no trusted issuer" in (
        inspect_chain([leaf], stranger.trust_bundle, NOW).chain_problem or ""
    )
    expired = inspect_chain([leaf], ecdsa_ca.trust_bundle, NOW + td(days=2))
    assert "outside its validity period" in (expired.chain_problem or "")
    assert expired.certificates[0].days_left < 0


def test_without_anchors_checks_against_the_end_of_the_input(
    ecdsa_ca: CertificateAuthority,
) -> None:
    leaf = issue_leaf(
        ecdsa_ca,
        LeafRequest(Usage.SERVER, DistinguishedName(common_name="s.example")),
        KeySpec().generate().public_key(),
        NOW,
    ).certificate
    assert inspect_chain([leaf, ecdsa_ca.certificate], None, NOW).chain_problem is None
    full = inspect_chain([leaf, ecdsa_ca.certificate], None, NOW)
    assert full.chain_valid is True
    assert full.checked_against == "the root at the end of the input"
    alone = inspect_chain([leaf], None, NOW)
    assert alone.chain_valid is None
    assert alone.to_json()["chain"]["valid"] is None
