"""The manual openssl recipe, done with the installed `mtls-operator` command
and checked the recipe's own way: the real openssl binary and pkilint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from recipe_checks import (
    DOMAIN_SYNTAX_FINDING,
    URI_SYNTAX_FINDING,
    mtls_handshake,
    openssl,
    openssl_purposes,
    openssl_verify,
    pkilint,
)

COMMAND = str(Path(sys.executable).parent / "mtls-operator")


def mtls(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [COMMAND, *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_recipe_in_two_commands_passes_the_recipe_checks(tmp_path: Path) -> None:
    mtls("ca", "init", "--out", str(tmp_path))
    mtls(
        "issue",
        "server",
        "--ca-dir",
        str(tmp_path),
        "--common-name",
        "localhost",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
    )
    mtls("issue", "client", "--ca-dir", str(tmp_path), "--common-name", "client-1")
    ca, server, client = (
        tmp_path / "ca-crt.pem",
        tmp_path / "server-crt.pem",
        tmp_path / "client-crt.pem",
    )

    for certificate in (server, client):
        result = openssl_verify(ca, certificate)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == f"{certificate}: OK"

    server_purposes, client_purposes = openssl_purposes(server), openssl_purposes(client)
    assert server_purposes["SSL server"] is True
    assert server_purposes["SSL client"] is False
    assert client_purposes["SSL client"] is True
    assert client_purposes["SSL server"] is False

    handshake = mtls_handshake(
        server_cert=server,
        server_key=tmp_path / "server-key.pem",
        server_trusts=ca,
        client_cert=client,
        client_key=tmp_path / "client-key.pem",
        client_trusts=ca,
    )
    assert handshake.succeeded, handshake.server_output + handshake.client_output


def test_handshake_with_a_client_from_another_ca_is_refused(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    mtls("ca", "init", "--out", str(ours))
    mtls("ca", "init", "--out", str(theirs), "--common-name", "Intruder CA")
    mtls("issue", "server", "--ca-dir", str(ours), "--common-name", "localhost")
    mtls("issue", "client", "--ca-dir", str(ours), "--common-name", "client-1")
    mtls("issue", "client", "--ca-dir", str(theirs), "--common-name", "intruder")
    refused = mtls_handshake(
        server_cert=ours / "server-crt.pem",
        server_key=ours / "server-key.pem",
        server_trusts=ours / "ca-crt.pem",
        client_cert=theirs / "client-crt.pem",
        client_key=theirs / "client-key.pem",
        client_trusts=ours / "ca-crt.pem",
    )
    assert not refused.succeeded
    assert "certificate verify failed" in refused.server_output

    accepted = mtls_handshake(
        server_cert=ours / "server-crt.pem",
        server_key=ours / "server-key.pem",
        server_trusts=ours / "ca-crt.pem",
        client_cert=ours / "client-crt.pem",
        client_key=ours / "client-key.pem",
        client_trusts=ours / "ca-crt.pem",
    )
    assert accepted.succeeded, accepted.server_output + accepted.client_output


def test_server_from_another_ca_is_refused_by_the_client(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    mtls("ca", "init", "--out", str(ours))
    mtls("ca", "init", "--out", str(theirs))
    mtls("issue", "server", "--ca-dir", str(theirs), "--common-name", "localhost")
    mtls("issue", "client", "--ca-dir", str(ours), "--common-name", "client-1")
    handshake = mtls_handshake(
        server_cert=theirs / "server-crt.pem",
        server_key=theirs / "server-key.pem",
        server_trusts=ours / "ca-crt.pem",
        client_cert=ours / "client-crt.pem",
        client_key=ours / "client-key.pem",
        client_trusts=ours / "ca-crt.pem",
    )
    assert not handshake.succeeded
    assert "unable to get local issuer certificate" in handshake.client_output


def test_ca_made_by_the_recipes_own_openssl_commands(tmp_path: Path) -> None:
    """`openssl genrsa -aes256` + `openssl req -new -x509`, exactly as users do it."""
    key, cert = tmp_path / "ca-key.pem", tmp_path / "ca-crt.pem"
    openssl("genrsa", "-aes256", "-passout", "pass:recipe-secret", "-out", str(key), "4096")
    openssl(
        "req",
        "-new",
        "-x509",
        "-days",
        "3650",
        "-key",
        str(key),
        "-passin",
        "pass:recipe-secret",
        "-out",
        str(cert),
        "-sha256",
        "-subj",
        "/C=DE/O=Shop/CN=My-CA",
    )
    passphrase = tmp_path / "passphrase.txt"
    passphrase.write_text("recipe-secret\n")

    missing = mtls(
        "issue", "server", "--ca-dir", str(tmp_path), "--common-name", "localhost", check=False
    )
    assert missing.returncode == 1
    assert missing.stderr == (
        f"mtls-operator: error: {tmp_path / 'ca-key.pem'} is encrypted: "
        "give its passphrase with --passphrase-file\n"
    )
    wrong_file = tmp_path / "wrong.txt"
    wrong_file.write_text("guess\n")
    wrong = mtls(
        "issue",
        "server",
        "--ca-dir",
        str(tmp_path),
        "--common-name",
        "localhost",
        "--passphrase-file",
        str(wrong_file),
        check=False,
    )
    assert wrong.returncode == 1
    assert (
        wrong.stderr
        == "mtls-operator: error: the CA key is unusable: the private key could not be decrypted: wrong passphrase\n"
    )
    assert not (tmp_path / "server-key.pem").exists()

    with_passphrase = ["--passphrase-file", str(passphrase)]
    mtls(
        "issue", "server", "--ca-dir", str(tmp_path), "--common-name", "localhost", *with_passphrase
    )
    mtls(
        "issue", "client", "--ca-dir", str(tmp_path), "--common-name", "client-1", *with_passphrase
    )
    for name in ("server-crt.pem", "client-crt.pem"):
        assert openssl_verify(cert, tmp_path / name).returncode == 0
    handshake = mtls_handshake(
        server_cert=tmp_path / "server-crt.pem",
        server_key=tmp_path / "server-key.pem",
        server_trusts=cert,
        client_cert=tmp_path / "client-crt.pem",
        client_key=tmp_path / "client-key.pem",
        client_trusts=cert,
    )
    assert handshake.succeeded, handshake.server_output + handshake.client_output


def test_the_recipes_ca_itself_fails_pkilint_and_ours_does_not(tmp_path: Path) -> None:
    """Why we do not copy the recipe's CA: `openssl req -x509` sets no keyUsage."""
    key, cert = tmp_path / "key.pem", tmp_path / "recipe-ca.pem"
    openssl("genrsa", "-out", str(key), "2048")
    openssl(
        "req",
        "-new",
        "-x509",
        "-days",
        "30",
        "-key",
        str(key),
        "-out",
        str(cert),
        "-sha256",
        "-subj",
        "/CN=My-CA",
    )
    assert pkilint(cert) == ["pkix.ca_certificate_no_ku_extension (ERROR)"]
    mtls(
        "ca",
        "init",
        "--out",
        str(tmp_path / "ours"),
        "--key-algorithm",
        "RSA",
        "--key-size",
        "4096",
    )
    assert pkilint(tmp_path / "ours" / "ca-crt.pem") == []


KEYS = [("ECDSA", "256"), ("ECDSA", "384"), ("ECDSA", "521"), ("RSA", "2048"), ("Ed25519", None)]


@pytest.mark.parametrize(("algorithm", "size"), KEYS, ids=str)
def test_every_profile_and_key_lints_clean(
    tmp_path: Path, algorithm: str, size: str | None
) -> None:
    key_args = ["--key-algorithm", algorithm] + (["--key-size", size] if size else [])
    mtls("ca", "init", "--out", str(tmp_path), *key_args)
    assert pkilint(tmp_path / "ca-crt.pem") == []
    for usage in ("server", "client", "both"):
        mtls(
            "issue",
            usage,
            "--ca-dir",
            str(tmp_path),
            "--common-name",
            f"{usage}.shop.example",
            "--dns",
            "api.shop.example",
            "--ip",
            "10.0.0.12",
            "--ip",
            "2001:db8::7",
            "--uri",
            "https://api.shop.example/payments",
            "--email",
            "ops@shop.example",
            *key_args,
        )
        certificate = tmp_path / f"{usage}-crt.pem"
        assert pkilint(certificate) == []
        result = openssl_verify(tmp_path / "ca-crt.pem", certificate)
        assert result.returncode == 0, result.stdout + result.stderr
        purposes = openssl_purposes(certificate)
        assert purposes["SSL server"] is (usage != "client")
        assert purposes["SSL client"] is (usage != "server")


def test_linter_limits_are_the_only_findings(tmp_path: Path) -> None:
    """Names TLS clients accept but pkilint's `validators` dependency does
    not: single-label hosts, wildcards, and non-web URI schemes such as SPIFFE."""
    mtls("ca", "init", "--out", str(tmp_path))
    mtls(
        "issue",
        "server",
        "--ca-dir",
        str(tmp_path),
        "--common-name",
        "localhost",
        "--dns",
        "payments",
        "--dns",
        "*.payments.shop.example",
        "--ip",
        "127.0.0.1",
        "--uri",
        "spiffe://cluster.local/ns/shop/sa/payments",
    )
    findings = pkilint(tmp_path / "server-crt.pem")
    assert findings == [
        'pkix.invalid_domain_name_syntax (ERROR): Invalid domain name syntax: "localhost"',
        'pkix.invalid_domain_name_syntax (ERROR): Invalid domain name syntax: "payments"',
        'pkix.invalid_domain_name_syntax (ERROR): Invalid domain name syntax: "*.payments.shop.example"',
        'pkix.invalid_uri_syntax (ERROR): Invalid URI syntax: "spiffe://cluster.local/ns/shop/sa/payments"',
    ]
    assert {f.split(" ")[0] for f in findings} == {DOMAIN_SYNTAX_FINDING, URI_SYNTAX_FINDING}
