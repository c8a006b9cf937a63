"""The offline CLI, run in-process: files, modes, messages and exit codes."""

from __future__ import annotations

import datetime
import json
import stat
from pathlib import Path

import pytest
from cryptography import x509

from mtls_operator.api.spec import parse_spec
from mtls_operator.cli.main import main
from mtls_operator.pki import load_certificates, load_private_key
from mtls_operator.pki.keys import key_spec_of


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def ca_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "ca"
    assert run(capsys, "ca", "init", "--out", str(directory))[0] == 0
    return directory


def test_ca_init_writes_the_recipe_files(ca_dir: Path) -> None:
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca-crt.pem", "ca-key.pem"]
    assert stat.S_IMODE((ca_dir / "ca-key.pem").stat().st_mode) == 0o600
    (certificate,) = load_certificates((ca_dir / "ca-crt.pem").read_bytes())
    assert certificate.subject.rfc4514_string() == "CN=mtls-operator CA"


def test_ca_init_refuses_to_replace_a_ca(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (ca_dir / "ca-key.pem").read_bytes()
    status, _, err = run(capsys, "ca", "init", "--out", str(ca_dir))
    assert status == 1
    assert err.count("\n") == 1
    assert "already exists; refusing to replace a CA (use --force)" in err
    assert (ca_dir / "ca-key.pem").read_bytes() == before
    assert run(capsys, "ca", "init", "--out", str(ca_dir), "--force")[0] == 0
    assert (ca_dir / "ca-key.pem").read_bytes() != before


@pytest.mark.parametrize("usage", ["server", "client", "both"])
def test_issue_writes_key_and_certificate(
    ca_dir: Path, capsys: pytest.CaptureFixture[str], usage: str
) -> None:
    status, out, _ = run(
        capsys,
        "issue",
        usage,
        "--ca-dir",
        str(ca_dir),
        "--common-name",
        "svc.example",
        "--key-algorithm",
        "rsa",
        "--key-size",
        "3072",
        "--days",
        "30",
    )
    assert status == 0
    assert f"{usage}-crt.pem" in out
    key_file = ca_dir / f"{usage}-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert str(key_spec_of(load_private_key(key_file.read_bytes()))) == "RSA-3072"
    assert "PRIVATE KEY" not in out


def test_issue_into_another_directory(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    assert (
        run(
            capsys,
            "issue",
            "client",
            "--ca-dir",
            str(ca_dir),
            "--common-name",
            "c1",
            "--out",
            str(out_dir),
        )[0]
        == 0
    )
    assert sorted(p.name for p in out_dir.iterdir()) == ["client-crt.pem", "client-key.pem"]


def test_encrypted_ca_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text("s3cret\n")
    ca_dir = tmp_path / "ca"
    assert (
        run(capsys, "ca", "init", "--out", str(ca_dir), "--passphrase-file", str(passphrase))[0]
        == 0
    )
    assert b"ENCRYPTED PRIVATE KEY" in (ca_dir / "ca-key.pem").read_bytes()
    status, _, err = run(
        capsys, "issue", "server", "--ca-dir", str(ca_dir), "--common-name", "a.example"
    )
    assert status == 1
    assert (
        err == f"mtls-operator: error: {ca_dir / 'ca-key.pem'} is encrypted: "
        "give its passphrase with --passphrase-file\n"
    )
    args = [
        "issue",
        "server",
        "--ca-dir",
        str(ca_dir),
        "--common-name",
        "a.example",
        "--passphrase-file",
        str(passphrase),
    ]
    assert run(capsys, *args)[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--dns", "bad_name.example"],
            "--dns 'bad_name.example': label 'bad_name' must consist of",
        ),
        (["--ip", "10.0.0.300"], "--ip '10.0.0.300': not an IPv4 or IPv6 address"),
        (["--uri", "no-scheme"], "--uri 'no-scheme': a URI must start with a scheme"),
        (["--email", "nobody"], "--email 'nobody': an e-mail address must look like"),
        (
            ["--key-algorithm", "ECDSA", "--key-size", "2048"],
            "--key-size 2048: ECDSA key size 2048 is not supported",
        ),
        (
            ["--key-algorithm", "Ed25519", "--key-size", "256"],
            "--key-size 256: Ed25519 keys have a fixed size",
        ),
        (["--common-name", "x" * 65], "at most 64 characters"),
    ],
)
def test_bad_input_is_one_line(
    ca_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base = ["issue", "server", "--ca-dir", str(ca_dir), "--common-name", "ok.example"]
    status, out, err = run(capsys, *base, *argv)
    assert status == 1
    assert out == ""
    assert err.startswith("mtls-operator: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert not (ca_dir / "server-key.pem").exists()


def test_missing_ca_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "issue", "client", "--ca-dir", str(tmp_path), "--common-name", "c")
    assert status == 1
    assert (
        err
        == f"mtls-operator: error: {tmp_path}: no CA found: expected tls.crt + tls.key, ca.crt + ca.key, ca-crt.pem + ca-key.pem\n"
    )


def test_unreadable_passphrase_file_is_one_line(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"
    status, _, err = run(
        capsys,
        "issue",
        "client",
        "--ca-dir",
        str(ca_dir),
        "--common-name",
        "c",
        "--passphrase-file",
        str(missing),
    )
    assert status == 1
    assert (
        err
        == f"mtls-operator: error: cannot read passphrase file {missing}: No such file or directory\n"
    )


def test_inspect_json_and_text(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(
        capsys,
        "issue",
        "server",
        "--ca-dir",
        str(ca_dir),
        "--common-name",
        "web.example",
        "--ip",
        "10.1.2.3",
    )
    status, out, _ = run(
        capsys,
        "inspect",
        str(ca_dir / "server-crt.pem"),
        "--ca-file",
        str(ca_dir / "ca-crt.pem"),
        "--json",
    )
    assert status == 0
    data = json.loads(out)
    assert data["chain"]["valid"] is True
    assert data["certificates"][0]["dnsNames"] == ["web.example"]
    assert data["certificates"][0]["ipAddresses"] == ["10.1.2.3"]
    status, out, _ = run(
        capsys, "inspect", str(ca_dir / "server-crt.pem"), "--ca-file", str(ca_dir / "ca-crt.pem")
    )
    assert status == 0
    assert "Chain: OK" in out
    assert "serverAuth" in out


def test_inspect_reports_a_broken_chain_with_its_own_status(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    run(capsys, "ca", "init", "--out", str(other))
    run(capsys, "issue", "server", "--ca-dir", str(ca_dir), "--common-name", "web.example")
    status, out, _ = run(
        capsys, "inspect", str(ca_dir / "server-crt.pem"), "--ca-file", str(other / "ca-crt.pem")
    )
    assert status == 3
    assert "Chain: INVALID: no trusted issuer found" in out


def test_inspect_garbage_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"hello")
    status, _, err = run(capsys, "inspect", str(junk))
    assert status == 1
    assert err == "mtls-operator: error: the data is neither a PEM nor a DER certificate\n"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys)
    assert status == 2
    assert "choose a command" in err


def test_an_address_alone_is_certified_as_the_operator_would(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only the address asked for: no Common Name is required, so none lands in the SAN,
    as with an MtlsCertificate that gives only ipAddresses."""
    status, out, _ = run(capsys, "issue", "server", "--ca-dir", str(ca_dir), "--ip", "10.0.0.7")
    assert status == 0
    assert "server certificate for 10.0.0.7," in out
    (certificate,) = load_certificates((ca_dir / "server-crt.pem").read_bytes())
    assert len(certificate.subject) == 0
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical, "RFC 5280 4.2.1.6: the SAN of an empty subject is critical"
    assert san.value.get_values_for_type(x509.DNSName) == []
    assert [str(a) for a in san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    spec = parse_spec(
        {"secretName": "db", "usage": "server", "ipAddresses": ["10.0.0.7"]},
        min_duration=datetime.timedelta(hours=1),
    )
    assert spec.request.effective_alt_names().general_names() == list(san.value)


def test_a_host_name_common_name_is_in_the_san_as_the_spec_says(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(
        capsys,
        "issue",
        "server",
        "--ca-dir",
        str(ca_dir),
        "--common-name",
        "db",
        "--ip",
        "10.0.0.7",
    )
    (certificate,) = load_certificates((ca_dir / "server-crt.pem").read_bytes())
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["db"]


def test_issue_without_any_identity_is_one_line(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "issue", "server", "--ca-dir", str(ca_dir))
    assert status == 1
    assert err == (
        "mtls-operator: error: --common-name must not be empty: give it, or one of --dns, "
        "--ip, --uri, --email\n"
    )


def test_issue_refuses_a_common_name_the_operator_refuses(
    ca_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(
        capsys,
        "issue",
        "client",
        "--ca-dir",
        str(ca_dir),
        "--common-name",
        "admin,O=system:masters",
    )
    assert status == 1
    assert err.startswith("mtls-operator: error: --common-name 'admin,O=system:masters': must not")
    assert err.count("\n") == 1
