from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from mtls_operator.api.managed_secret import read_secret
from mtls_operator.certificates.content import issue_secret_content, repaired_data
from mtls_operator.pki import (
    CertificateAuthority,
    KeyAlgorithm,
    KeySpec,
    PrivateKey,
    Usage,
    keys,
    load_certificates,
    load_private_key,
)
from mtls_operator.pki.keys import key_spec_of, private_key_to_pem, public_key_der

from support.authorities import intermediate_authority, with_next_root
from support.clock import NOW
from support.objects import certificate_spec, secret_body, secret_data
from support.x509_checks import alt_names, assert_is_leaf

PASSWORD = b"changeit"
PKCS12 = {"keystores": {"pkcs12": {"passwordSecretRef": {"name": "p12-pass"}}}}
KEYS = {
    "ECDSA-256": {"algorithm": "ECDSA"},
    "ECDSA-384": {"algorithm": "ECDSA", "size": 384},
    "RSA-2048": {"algorithm": "RSA"},
    "Ed25519": {"algorithm": "Ed25519"},
}


@pytest.fixture(scope="module")
def intermediate(ecdsa_ca: CertificateAuthority) -> CertificateAuthority:
    return intermediate_authority(ecdsa_ca)


@pytest.mark.parametrize("usage", list(Usage), ids=lambda u: u.value)
@pytest.mark.parametrize("key", list(KEYS), ids=str)
def test_every_usage_and_key_algorithm(
    ecdsa_ca: CertificateAuthority, usage: Usage, key: str
) -> None:
    spec = certificate_spec(usage=usage.value, privateKey=KEYS[key])
    content = issue_secret_content(spec, ecdsa_ca, NOW)
    assert set(content.data) == {"tls.crt", "tls.key", "ca.crt"}
    [leaf] = load_certificates(content.data["tls.crt"])
    assert leaf == content.issued.certificate
    assert_is_leaf(leaf, ecdsa_ca.certificate, usage)
    assert alt_names(leaf) == ["DNSName:payments", "DNSName:payments.shop.svc"]
    private_key = load_private_key(content.data["tls.key"])
    assert str(key_spec_of(private_key)) == key
    assert public_key_der(private_key) == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert content.data["ca.crt"] == ecdsa_ca.trust_bundle_pem


@pytest.mark.parametrize(
    ("private_key", "header"),
    [
        ({"algorithm": "ECDSA", "encoding": "PKCS8"}, b"-----BEGIN PRIVATE KEY-----\n"),
        ({"algorithm": "ECDSA", "encoding": "PKCS1"}, b"-----BEGIN EC PRIVATE KEY-----\n"),
        ({"algorithm": "RSA", "encoding": "PKCS8"}, b"-----BEGIN PRIVATE KEY-----\n"),
        ({"algorithm": "RSA", "encoding": "PKCS1"}, b"-----BEGIN RSA PRIVATE KEY-----\n"),
        ({"algorithm": "Ed25519", "encoding": "PKCS8"}, b"-----BEGIN PRIVATE KEY-----\n"),
    ],
    ids=["ecdsa-pkcs8", "ecdsa-sec1", "rsa-pkcs8", "rsa-pkcs1", "ed25519-pkcs8"],
)
def test_key_pem_header_follows_the_encoding(
    ecdsa_ca: CertificateAuthority, private_key: dict[str, str], header: bytes
) -> None:
    body = secret_body(certificate_spec(privateKey=private_key), ecdsa_ca)
    assert secret_data(body)["tls.key"].startswith(header)
    facts = read_secret(body)
    assert (facts.problem, facts.key_matches) == (None, True)


# --- rotationPolicy ---


@pytest.fixture(scope="module")
def rsa_key() -> PrivateKey:
    return KeySpec(KeyAlgorithm.RSA, 2048).generate()


def issued_key(ca: CertificateAuthority, previous: bytes | None, **private_key: Any) -> PrivateKey:
    spec = certificate_spec(privateKey=private_key)
    return load_private_key(
        issue_secret_content(spec, ca, NOW, previous_key_pem=previous).data["tls.key"]
    )


ECDSA_256 = KeySpec().generate()
ECDSA_384 = KeySpec(KeyAlgorithm.ECDSA, 384).generate()
ED25519 = KeySpec(KeyAlgorithm.ED25519, None).generate()


@pytest.mark.parametrize(
    ("previous", "previous_pem", "private_key", "reused"),
    [
        (ECDSA_256, private_key_to_pem(ECDSA_256), {"rotationPolicy": "Never"}, True),
        (
            ECDSA_256,
            private_key_to_pem(ECDSA_256),
            {"rotationPolicy": "Never", "encoding": "PKCS1"},
            True,
        ),
        (
            ED25519,
            private_key_to_pem(ED25519),
            {"rotationPolicy": "Never", "algorithm": "Ed25519"},
            True,
        ),
        (ECDSA_384, private_key_to_pem(ECDSA_384), {"rotationPolicy": "Never"}, False),
        (ED25519, private_key_to_pem(ED25519), {"rotationPolicy": "Never"}, False),
        (ECDSA_256, private_key_to_pem(ECDSA_256), {"rotationPolicy": "Always"}, False),
        (ECDSA_256, private_key_to_pem(ECDSA_256), {}, False),
        (
            ECDSA_256,
            private_key_to_pem(ECDSA_256, passphrase=b"pw"),
            {"rotationPolicy": "Never"},
            False,
        ),
        (None, b"not a key", {"rotationPolicy": "Never"}, False),
        (None, None, {"rotationPolicy": "Never"}, False),
    ],
    ids=[
        "never-same-kind",
        "never-reencoded",
        "never-ed25519",
        "never-other-size",
        "never-other-algorithm",
        "always",
        "default-always",
        "never-unreadable-previous",
        "never-garbage-previous",
        "never-no-previous",
    ],
)
def test_rotation_policy(
    ecdsa_ca: CertificateAuthority,
    previous: PrivateKey | None,
    previous_pem: bytes | None,
    private_key: dict[str, str],
    reused: bool,
) -> None:
    key = issued_key(ecdsa_ca, previous_pem, **private_key)
    same = previous is not None and public_key_der(key) == public_key_der(previous)
    assert same is reused
    assert key_spec_of(key) == certificate_spec(privateKey=private_key).private_key.key


def test_rotation_never_does_not_keep_an_rsa_key_for_an_ecdsa_spec(
    ecdsa_ca: CertificateAuthority, rsa_key: PrivateKey
) -> None:
    key = issued_key(ecdsa_ca, private_key_to_pem(rsa_key), rotationPolicy="Never")
    assert key_spec_of(key) == KeySpec()


def test_rotation_never_checks_a_previous_rsa_key_only_when_it_would_keep_it(
    ecdsa_ca: CertificateAuthority, rsa_key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An ECDSA spec is signed on the event loop: checking an RSA-8192 key
    # there (38 ms) only to throw it away would stall everyone.
    checked: list[object] = []
    check = keys._consistent_rsa

    def counted(key: rsa.RSAPrivateKey) -> bool:
        checked.append(key)
        return check(key)

    monkeypatch.setattr(keys, "_consistent_rsa", counted)
    previous = private_key_to_pem(rsa_key)
    for private_key in (
        {"rotationPolicy": "Never"},
        {"rotationPolicy": "Never", "algorithm": "RSA"},
    ):
        spec = certificate_spec(privateKey=private_key)
        issue_secret_content(spec, ecdsa_ca, NOW, previous_key_pem=previous)
    assert len(checked) == 1, "checked although the spec asks for another algorithm"


def test_rotation_never_keeps_an_rsa_key_of_the_same_size(
    ecdsa_ca: CertificateAuthority, rsa_key: PrivateKey
) -> None:
    key = issued_key(
        ecdsa_ca,
        private_key_to_pem(rsa_key),
        rotationPolicy="Never",
        algorithm="RSA",
        encoding="PKCS1",
    )
    assert public_key_der(key) == public_key_der(rsa_key)


# --- Additional formats ---


def test_combined_pem_is_the_key_then_the_chain(intermediate: CertificateAuthority) -> None:
    spec = certificate_spec(
        additionalOutputFormats=["CombinedPEM"], privateKey={"encoding": "PKCS1"}
    )
    data = issue_secret_content(spec, intermediate, NOW).data
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "tls-combined.pem"}
    assert data["tls-combined.pem"] == data["tls.key"] + data["tls.crt"]
    assert data["tls-combined.pem"].startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    chain = load_certificates(data["tls.crt"])
    assert chain[1:] == list(intermediate.intermediates)
    assert len(chain) == 2
    assert data["ca.crt"] == intermediate.trust_bundle_pem


@pytest.mark.parametrize("encoding", ["PKCS8", "PKCS1"])
def test_der_is_unencrypted_pkcs8(ecdsa_ca: CertificateAuthority, encoding: str) -> None:
    spec = certificate_spec(
        additionalOutputFormats=[{"type": "DER"}], privateKey={"encoding": encoding}
    )
    data = issue_secret_content(spec, ecdsa_ca, NOW).data
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "key.der"}
    key = load_private_key(data["tls.key"])
    assert data["key.der"] == key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    loaded = serialization.load_der_private_key(data["key.der"], None)
    assert isinstance(loaded, PrivateKey)
    assert public_key_der(loaded) == public_key_der(key)


def test_pkcs12_keystore_and_truststore_load_back(intermediate: CertificateAuthority) -> None:
    ca = with_next_root(intermediate)
    data = issue_secret_content(certificate_spec(**PKCS12), ca, NOW, pkcs12_password=PASSWORD).data
    assert set(data) == {"tls.crt", "tls.key", "ca.crt", "keystore.p12", "truststore.p12"}
    chain = load_certificates(data["tls.crt"])

    keystore = pkcs12.load_pkcs12(data["keystore.p12"], PASSWORD)
    assert keystore.key is not None
    assert public_key_der(keystore.key) == public_key_der(load_private_key(data["tls.key"]))  # type: ignore[arg-type]
    assert keystore.cert is not None
    assert keystore.cert.certificate == chain[0]
    assert keystore.cert.friendly_name == b"certificate"
    assert [c.certificate for c in keystore.additional_certs] == chain[1:]

    truststore = pkcs12.load_pkcs12(data["truststore.p12"], PASSWORD)
    assert truststore.key is None
    assert truststore.cert is None
    assert [c.certificate for c in truststore.additional_certs] == list(ca.trust_bundle)
    assert [c.friendly_name for c in truststore.additional_certs] == [b"ca-0", b"ca-1"]
    assert len(ca.trust_bundle) == 2

    with pytest.raises(ValueError, match="Invalid password"):
        pkcs12.load_pkcs12(data["keystore.p12"], b"wrong")


def test_pkcs12_keystore_opens_with_openssl(ecdsa_ca: CertificateAuthority, tmp_path: Path) -> None:
    data = issue_secret_content(
        certificate_spec(**PKCS12), ecdsa_ca, NOW, pkcs12_password=PASSWORD
    ).data
    keystore = tmp_path / "keystore.p12"
    keystore.write_bytes(data["keystore.p12"])
    shown = subprocess.run(
        [
            "openssl",
            "pkcs12",
            "-in",
            str(keystore),
            "-passin",
            f"pass:{PASSWORD.decode()}",
            "-nokeys",
        ],
        capture_output=True,
        check=True,
        timeout=30,
    ).stdout
    assert load_certificates(shown) == load_certificates(data["tls.crt"])
    assert b"PRIVATE KEY" not in shown
    refused = subprocess.run(
        ["openssl", "pkcs12", "-in", str(keystore), "-passin", "pass:wrong", "-nokeys"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert refused.returncode != 0


def test_no_keystores_without_a_password(ecdsa_ca: CertificateAuthority) -> None:
    data = issue_secret_content(certificate_spec(**PKCS12), ecdsa_ca, NOW).data
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}


# --- repaired_data ---


def test_repair_rebuilds_bundle_and_outputs_around_the_same_key(
    ecdsa_ca: CertificateAuthority,
) -> None:
    spec = certificate_spec(additionalOutputFormats=["CombinedPEM", "DER"], **PKCS12)
    original = secret_data(secret_body(spec, ecdsa_ca, pkcs12_password=PASSWORD))
    rotated = with_next_root(ecdsa_ca)

    repaired = repaired_data(spec, rotated, original, PASSWORD)

    assert set(repaired) == {
        "ca.crt",
        "tls-combined.pem",
        "key.der",
        "keystore.p12",
        "truststore.p12",
    }
    assert repaired["ca.crt"] == rotated.trust_bundle_pem
    assert repaired["ca.crt"] != original["ca.crt"]
    assert repaired["tls-combined.pem"] == original["tls-combined.pem"]
    assert repaired["key.der"] == original["key.der"]
    truststore = pkcs12.load_pkcs12(repaired["truststore.p12"], PASSWORD)
    assert [c.certificate for c in truststore.additional_certs] == list(rotated.trust_bundle)
    keystore = pkcs12.load_pkcs12(repaired["keystore.p12"], PASSWORD)
    assert keystore.cert is not None
    assert [keystore.cert.certificate] == load_certificates(original["tls.crt"])


def test_repair_without_extra_formats_is_only_the_bundle(ecdsa_ca: CertificateAuthority) -> None:
    spec = certificate_spec()
    original = secret_data(secret_body(spec, ecdsa_ca))
    rotated = with_next_root(ecdsa_ca)
    assert repaired_data(spec, rotated, original, None) == {"ca.crt": rotated.trust_bundle_pem}
