"""CRLs checked the way relying parties check them: the real openssl binary
(`crl -verify`, `verify -crl_check`, `s_server -crl_check`), Python's ssl in
a real handshake, and pkilint's RFC 5280 CRL linter. The tools read the
system clock, so everything here is made at the real time."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from mtls_operator.pki import (
    CertificateAuthority,
    KeyAlgorithm,
    KeySpec,
    Revocation,
    crl_to_pem,
    sign_crl,
)
from mtls_operator.pki.keys import key_spec_of

from recipe_checks import (
    mtls_handshake,
    openssl,
    openssl_crl_verify,
    openssl_verify,
    pkilint_crl,
)
from support.authorities import make_ca
from support.python_tls import server_verdict
from support.revocation_scene import CRL_PERIOD, LeafFiles, RevocationScene, revocation_scene

CA_KEYS = [KeySpec(), KeySpec(KeyAlgorithm.RSA, 2048), KeySpec(KeyAlgorithm.ED25519, None)]


@pytest.fixture(scope="module")
def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module", params=CA_KEYS, ids=str)
def ca(request: pytest.FixtureRequest, now: datetime.datetime) -> CertificateAuthority:
    spec: KeySpec = request.param
    return make_ca(spec, now=now)


@pytest.fixture(scope="module")
def scene(
    ca: CertificateAuthority, now: datetime.datetime, tmp_path_factory: pytest.TempPathFactory
) -> RevocationScene:
    return revocation_scene(tmp_path_factory.mktemp("revocation"), ca, now)


def write_crl(path: Path, ca: CertificateAuthority, revocations: list[Revocation]) -> Path:
    now = datetime.datetime.now(datetime.UTC)
    der = sign_crl(ca, revocations, number=7, this_update=now, next_update=now + CRL_PERIOD)
    path.write_bytes(crl_to_pem(der))
    return path


def test_every_crl_verifies_with_openssl_and_lints_clean(
    scene: RevocationScene, ca: CertificateAuthority, tmp_path: Path
) -> None:
    empty = write_crl(tmp_path / "empty.pem", ca, [])
    for crl in (scene.crl, empty):
        verified = openssl_crl_verify(scene.ca, crl)
        assert verified.returncode == 0, verified.stderr
        assert verified.stderr.strip() == "verify OK"
        text = openssl("crl", "-in", str(crl), "-noout", "-text").stdout
        assert "Version 2 (0x1)" in text
        assert pkilint_crl(crl) == []


def test_openssl_refuses_a_crl_signed_by_another_key(
    scene: RevocationScene, ca: CertificateAuthority, tmp_path: Path
) -> None:
    """Same issuer name and key identifier, another key: what a forged CRL would be."""
    other_key = key_spec_of(ca.private_key).generate()
    impostor = CertificateAuthority(ca.certificate, other_key, ca.intermediates, ca.trust_bundle)
    forged = write_crl(tmp_path / "forged.pem", impostor, [])
    refused = openssl_crl_verify(scene.ca, forged)
    assert refused.stderr.strip() == "verify failure"


def test_pkilint_reports_what_rfc_5280_forbids(tmp_path: Path) -> None:
    """The linter does lint CRLs: one built without the Authority Key
    Identifier and with a critical reason code is caught on both counts."""
    ca = make_ca(now=datetime.datetime.now(datetime.UTC))
    now = datetime.datetime.now(datetime.UTC)
    entry = (
        x509.RevokedCertificateBuilder()
        .serial_number(5)
        .revocation_date(now)
        .add_extension(x509.CRLReason(x509.ReasonFlags.superseded), critical=True)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + CRL_PERIOD)
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_revoked_certificate(entry)
        .sign(ca.private_key, hashes.SHA256())
    )
    path = tmp_path / "bad.pem"
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    assert pkilint_crl(path) == [
        "pkix.authority_key_identifier_missing (ERROR)",
        "pkix.crl_reason_code_extension_critical (ERROR): Extension 2.5.29.21 is critical",
    ]


def test_openssl_verify_with_the_crl_refuses_only_the_revoked_leaf(
    scene: RevocationScene,
) -> None:
    for leaf in (scene.server, scene.good_client):
        accepted = openssl_verify(scene.ca, leaf.certificate, crl=scene.crl)
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
        assert accepted.stdout.strip() == f"{leaf.certificate}: OK"
    refused = openssl_verify(scene.ca, scene.revoked_client.certificate, crl=scene.crl)
    assert refused.returncode != 0
    assert "certificate revoked" in refused.stdout + refused.stderr


def handshake(scene: RevocationScene, client: LeafFiles) -> tuple[bool, str]:
    result = mtls_handshake(
        server_cert=scene.server.certificate,
        server_key=scene.server.key,
        server_trusts=scene.ca,
        client_cert=client.certificate,
        client_key=client.key,
        client_trusts=scene.ca,
        server_crl=scene.crl,
    )
    return result.succeeded, result.server_output + result.client_output


def test_openssl_s_server_with_crl_check_refuses_only_the_revoked_client(
    scene: RevocationScene,
) -> None:
    accepted, output = handshake(scene, scene.good_client)
    assert accepted, output
    refused, output = handshake(scene, scene.revoked_client)
    assert not refused
    assert "certificate revoked" in output


def test_python_ssl_with_crl_check_refuses_only_the_revoked_client(
    scene: RevocationScene,
) -> None:
    assert server_verdict(scene, scene.good_client) is None
    assert server_verdict(scene, scene.revoked_client) == "certificate revoked"
