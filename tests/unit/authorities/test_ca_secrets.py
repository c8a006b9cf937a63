from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from mtls_operator.authorities.bootstrap import BOOTSTRAP_COMMON_NAME, bootstrap_ca_data
from mtls_operator.authorities.layouts import (
    PASSPHRASE_ANNOTATION,
    ca_from_secret_data,
    passphrase_from_secret_data,
    passphrase_secret_name,
)
from mtls_operator.pki import CAError, CAProblem, CertificateAuthority, KeySpec, load_certificates
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import key_spec_of, private_key_to_pem

from support.authorities import intermediate_authority, make_ca
from support.clock import NOW
from support.x509_checks import assert_is_root_ca

td = datetime.timedelta


@dataclass(frozen=True)
class Pems:
    """PEM texts a CA Secret can be made of."""

    root: bytes
    root_key: bytes
    other: bytes  # a second, unrelated CA
    other_key: bytes
    chain: bytes  # intermediate, then root
    chain_key: bytes
    next_root: bytes


def pem_of(ca: CertificateAuthority) -> tuple[bytes, bytes]:
    return certificates_to_pem([ca.certificate]), private_key_to_pem(ca.private_key)


@pytest.fixture(scope="module")
def pems(ecdsa_ca: CertificateAuthority) -> Pems:
    root, root_key = pem_of(ecdsa_ca)
    other, other_key = pem_of(make_ca(common_name="Other CA"))
    intermediate = intermediate_authority(ecdsa_ca)
    return Pems(
        root=root,
        root_key=root_key,
        other=other,
        other_key=other_key,
        chain=certificates_to_pem([intermediate.certificate, ecdsa_ca.certificate]),
        chain_key=private_key_to_pem(intermediate.private_key),
        next_root=pem_of(make_ca(common_name="Next Root CA"))[0],
    )


def subjects(certificates: tuple[object, ...] | list[object]) -> list[str]:
    return [c.subject.rfc4514_string() for c in certificates]  # type: ignore[attr-defined]


Layout = Callable[[Pems], dict[str, bytes]]
ROOT = "CN=Test Root CA"
LAYOUTS: list[tuple[str, Layout, str, list[str], list[str]]] = [
    # (id, CA Secret data, signing subject, intermediates, trust bundle)
    ("kubectl-tls", lambda p: {"tls.crt": p.root, "tls.key": p.root_key}, ROOT, [], [ROOT]),
    (
        "kubectl-tls-with-bundle",
        lambda p: {"tls.crt": p.root, "tls.key": p.root_key, "ca.crt": p.root + p.next_root},
        ROOT,
        [],
        [ROOT, "CN=Next Root CA"],
    ),
    (
        "kubectl-tls-intermediate-chain",
        lambda p: {"tls.crt": p.chain, "tls.key": p.chain_key},
        "CN=Test Intermediate CA",
        ["CN=Test Intermediate CA"],
        [ROOT],
    ),
    (
        "kubectl-tls-intermediate-with-bundle",
        lambda p: {"tls.crt": p.chain, "tls.key": p.chain_key, "ca.crt": p.root},
        "CN=Test Intermediate CA",
        ["CN=Test Intermediate CA"],
        [ROOT],
    ),
    ("cert-manager-style", lambda p: {"ca.crt": p.root, "ca.key": p.root_key}, ROOT, [], [ROOT]),
    (
        "openssl-recipe",
        lambda p: {"ca-crt.pem": p.root, "ca-key.pem": p.root_key},
        ROOT,
        [],
        [ROOT],
    ),
    (
        "tls-before-recipe",
        lambda p: {
            "tls.crt": p.root,
            "tls.key": p.root_key,
            "ca-crt.pem": p.other,
            "ca-key.pem": p.other_key,
        },
        ROOT,
        [],
        [ROOT],
    ),
    (
        "ca-pair-before-recipe",
        lambda p: {
            "ca.crt": p.root,
            "ca.key": p.root_key,
            "ca-crt.pem": p.other,
            "ca-key.pem": p.other_key,
        },
        ROOT,
        [],
        [ROOT],
    ),
    (
        "incomplete-tls-pair-is-skipped",
        lambda p: {"tls.crt": p.other, "ca.crt": p.root, "ca.key": p.root_key},
        ROOT,
        [],
        [ROOT],
    ),
    (
        "empty-tls-pair-is-skipped",
        lambda p: {"tls.crt": b"", "tls.key": b"", "ca-crt.pem": p.root, "ca-key.pem": p.root_key},
        ROOT,
        [],
        [ROOT],
    ),
]


@pytest.mark.parametrize(
    ("layout", "signing", "intermediates", "bundle"),
    [pytest.param(*case[1:], id=case[0]) for case in LAYOUTS],
)
def test_ca_layout(
    pems: Pems, layout: Layout, signing: str, intermediates: list[str], bundle: list[str]
) -> None:
    ca = ca_from_secret_data(layout(pems), NOW)
    assert ca.subject == signing
    assert subjects(ca.intermediates) == intermediates
    assert subjects(ca.trust_bundle) == bundle


NO_CA = "no CA found: expected tls.crt + tls.key, ca.crt + ca.key, ca-crt.pem + ca-key.pem"


@pytest.mark.parametrize(
    "layout",
    [
        lambda p: {},
        lambda p: {"tls.crt": p.root},
        lambda p: {"ca.key": p.root_key},
        lambda p: {"tls.crt": p.root, "ca.key": p.root_key},
        lambda p: {"ca-crt.pem": b"", "ca-key.pem": b""},
        lambda p: {"passphrase": b"s3cret"},
    ],
    ids=["empty", "certificate-only", "key-only", "mixed-pairs", "empty-values", "unrelated-keys"],
)
def test_no_complete_layout(pems: Pems, layout: Layout) -> None:
    with pytest.raises(CAError) as caught:
        ca_from_secret_data(layout(pems), NOW)
    assert caught.value.problem is CAProblem.INCOMPLETE
    assert str(caught.value) == NO_CA


def test_bundle_that_does_not_verify_the_ca_is_refused(pems: Pems) -> None:
    with pytest.raises(CAError) as caught:
        ca_from_secret_data(
            {"tls.crt": pems.root, "tls.key": pems.root_key, "ca.crt": pems.other}, NOW
        )
    assert caught.value.problem is CAProblem.INCOMPLETE
    assert str(caught.value).startswith(
        "the trust bundle does not verify the CA 'CN=Test Root CA': "
    )


def test_recipe_layout_uses_a_ca_crt_bundle(pems: Pems) -> None:
    data = {
        "ca-crt.pem": pems.root,
        "ca-key.pem": pems.root_key,
        "ca.crt": pems.root + pems.next_root,
    }
    ca = ca_from_secret_data(data, NOW)
    assert ca.subject == ROOT
    assert subjects(ca.trust_bundle) == [ROOT, "CN=Next Root CA"]
    assert ca.trust_bundle_pem == pems.root + pems.next_root


def test_recipe_layout_with_an_intermediate_uses_a_ca_crt_bundle(pems: Pems) -> None:
    ca = ca_from_secret_data(
        {"ca-crt.pem": pems.chain, "ca-key.pem": pems.chain_key, "ca.crt": pems.root}, NOW
    )
    assert ca.subject == "CN=Test Intermediate CA"
    assert subjects(ca.intermediates) == ["CN=Test Intermediate CA"]
    assert subjects(ca.trust_bundle) == [ROOT]


def test_recipe_layout_refuses_a_ca_crt_bundle_that_does_not_verify_the_ca(pems: Pems) -> None:
    with pytest.raises(CAError) as caught:
        ca_from_secret_data(
            {"ca-crt.pem": pems.root, "ca-key.pem": pems.root_key, "ca.crt": pems.other}, NOW
        )
    assert caught.value.problem is CAProblem.INCOMPLETE
    assert str(caught.value).startswith(
        "the trust bundle does not verify the CA 'CN=Test Root CA': "
    )


# --- Passphrases ---


@pytest.fixture(scope="module")
def encrypted(ecdsa_ca: CertificateAuthority) -> dict[str, bytes]:
    return {
        "ca-crt.pem": certificates_to_pem([ecdsa_ca.certificate]),
        "ca-key.pem": private_key_to_pem(ecdsa_ca.private_key, passphrase=b"s3cret"),
    }


def test_encrypted_ca_key_with_its_passphrase(
    encrypted: dict[str, bytes], ecdsa_ca: CertificateAuthority
) -> None:
    ca = ca_from_secret_data(encrypted, NOW, b"s3cret")
    assert ca.fingerprint == ecdsa_ca.fingerprint


@pytest.mark.parametrize(
    ("passphrase", "message"),
    [
        (None, "the CA key is unusable: the private key is encrypted and no passphrase was given"),
        (
            b"wrong",
            "the CA key is unusable: the private key could not be decrypted: wrong passphrase",
        ),
        (
            b"s3cret\n",
            "the CA key is unusable: the private key could not be decrypted: wrong passphrase",
        ),
    ],
    ids=["none", "wrong", "with-newline"],
)
def test_encrypted_ca_key_without_the_right_passphrase(
    encrypted: dict[str, bytes], passphrase: bytes | None, message: str
) -> None:
    with pytest.raises(CAError) as caught:
        ca_from_secret_data(encrypted, NOW, passphrase)
    assert caught.value.problem is CAProblem.KEY_UNREADABLE
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("stored", "passphrase"),
    [
        (b"s3cret", b"s3cret"),
        (b"s3cret\n", b"s3cret"),
        (b"s3cret\r\n", b"s3cret"),
        (b"s3cret\n\n", b"s3cret"),
        (b" s3cret \n", b" s3cret "),
        (b"multi\nline\n", b"multi\nline"),
    ],
    ids=["plain", "echo-newline", "crlf", "two-newlines", "spaces-kept", "inner-newline-kept"],
)
def test_passphrase_loses_only_trailing_newlines(stored: bytes, passphrase: bytes) -> None:
    assert passphrase_from_secret_data({"passphrase": stored}) == passphrase


@pytest.mark.parametrize(
    "data", [{}, {"passphrase": b""}, {"password": b"s3cret"}], ids=["empty", "blank", "other-key"]
)
def test_passphrase_secret_without_passphrase(data: dict[str, bytes]) -> None:
    with pytest.raises(CAError) as caught:
        passphrase_from_secret_data(data)
    assert caught.value.problem is CAProblem.KEY_UNREADABLE
    assert str(caught.value) == "the passphrase Secret has no 'passphrase' key"


def test_passphrase_written_with_echo_opens_the_key(encrypted: dict[str, bytes]) -> None:
    passphrase = passphrase_from_secret_data({"passphrase": b"s3cret\n"})
    assert ca_from_secret_data(encrypted, NOW, passphrase).subject == ROOT


@pytest.mark.parametrize(
    ("annotations", "name"),
    [
        ({PASSPHRASE_ANNOTATION: "ca-passphrase"}, "ca-passphrase"),
        ({PASSPHRASE_ANNOTATION: ""}, None),
        ({}, None),
        ({"mtls.dev/other": "x"}, None),
    ],
)
def test_passphrase_secret_name(annotations: dict[str, str], name: str | None) -> None:
    assert PASSPHRASE_ANNOTATION == "mtls.dev/passphrase-secret"
    assert passphrase_secret_name(annotations) == name


# --- Bootstrap ---


def test_bootstrap_data_is_a_ten_year_ecdsa_root() -> None:
    data = bootstrap_ca_data(NOW)
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    assert data["ca.crt"] == data["tls.crt"]
    ca = ca_from_secret_data(data, NOW)
    [certificate] = load_certificates(data["tls.crt"])
    assert ca.certificate == certificate
    assert_is_root_ca(certificate)
    assert ca.subject == f"CN={BOOTSTRAP_COMMON_NAME}"
    assert BOOTSTRAP_COMMON_NAME == "mtls-operator cluster CA"
    assert key_spec_of(ca.private_key) == KeySpec()
    assert certificate.not_valid_after_utc == NOW + td(days=3650)
    assert certificate.not_valid_before_utc == NOW - td(minutes=5)
    assert ca.trust_bundle == (certificate,)
    assert data["tls.key"].startswith(b"-----BEGIN PRIVATE KEY-----\n")


def test_bootstrap_makes_a_new_root_every_time() -> None:
    assert bootstrap_ca_data(NOW)["tls.key"] != bootstrap_ca_data(NOW)["tls.key"]
