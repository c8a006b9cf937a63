from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mtls_operator.pki import KeyAlgorithm, KeyEncoding, KeyLoadError, KeySpec, load_private_key
from mtls_operator.pki.keys import key_spec_of, private_key_to_der, private_key_to_pem

ALL_SPECS = [
    KeySpec(KeyAlgorithm.ECDSA, 256),
    KeySpec(KeyAlgorithm.ECDSA, 384),
    KeySpec(KeyAlgorithm.ECDSA, 521),
    KeySpec(KeyAlgorithm.RSA, 2048),
    KeySpec(KeyAlgorithm.RSA, 3072),
    KeySpec(KeyAlgorithm.ED25519, None),
]


@pytest.mark.parametrize("spec", ALL_SPECS, ids=str)
def test_generates_the_key_it_names(spec: KeySpec) -> None:
    key = spec.generate()
    assert key_spec_of(key) == spec
    assert key_spec_of(key.public_key()) == spec


def test_default_is_ecdsa_p256() -> None:
    key = KeySpec().generate()
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)


@pytest.mark.parametrize(
    ("algorithm", "size", "expected"),
    [
        (KeyAlgorithm.ECDSA, None, 256),
        (KeyAlgorithm.RSA, None, 2048),
        (KeyAlgorithm.RSA, 4096, 4096),
        (KeyAlgorithm.ED25519, None, None),
    ],
)
def test_of_fills_default_sizes(
    algorithm: KeyAlgorithm, size: int | None, expected: int | None
) -> None:
    assert KeySpec.of(algorithm, size).size == expected


@pytest.mark.parametrize(
    ("algorithm", "size", "message"),
    [
        (KeyAlgorithm.ECDSA, 2048, "ECDSA key size 2048 is not supported"),
        (KeyAlgorithm.RSA, 1024, "RSA key size 1024 is not supported"),
        (KeyAlgorithm.RSA, 256, "choose 2048, 3072, 4096"),
        (KeyAlgorithm.ED25519, 256, "fixed size"),
    ],
)
def test_of_rejects_impossible_sizes(algorithm: KeyAlgorithm, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KeySpec.of(algorithm, size)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ecdsa", KeyAlgorithm.ECDSA), ("RSA", KeyAlgorithm.RSA), ("ed25519", KeyAlgorithm.ED25519)],
)
def test_parses_algorithm_names_case_insensitively(text: str, expected: KeyAlgorithm) -> None:
    assert KeyAlgorithm.parse(text) is expected


def test_unknown_algorithm_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="choose one of ECDSA, RSA, Ed25519"):
        KeyAlgorithm.parse("DSA")


@pytest.mark.parametrize(
    ("spec", "encoding", "header"),
    [
        (KeySpec(KeyAlgorithm.ECDSA, 256), KeyEncoding.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
        (KeySpec(KeyAlgorithm.ECDSA, 256), KeyEncoding.PKCS1, b"-----BEGIN EC PRIVATE KEY-----"),
        (KeySpec(KeyAlgorithm.RSA, 2048), KeyEncoding.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
        (KeySpec(KeyAlgorithm.RSA, 2048), KeyEncoding.PKCS1, b"-----BEGIN RSA PRIVATE KEY-----"),
        (KeySpec(KeyAlgorithm.ED25519, None), KeyEncoding.PKCS8, b"-----BEGIN PRIVATE KEY-----"),
    ],
)
def test_pem_encodings_round_trip(spec: KeySpec, encoding: KeyEncoding, header: bytes) -> None:
    key = spec.generate()
    pem = private_key_to_pem(key, encoding)
    assert pem.startswith(header)
    assert private_key_to_pem(load_private_key(pem)) == private_key_to_pem(key)


def test_ed25519_has_no_traditional_encoding() -> None:
    with pytest.raises(ValueError, match="only be written as PKCS8"):
        private_key_to_pem(ed25519.Ed25519PrivateKey.generate(), KeyEncoding.PKCS1)


def test_encrypted_key_needs_its_passphrase() -> None:
    key = KeySpec().generate()
    pem = private_key_to_pem(key, passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in pem
    assert key_spec_of(load_private_key(pem, b"correct horse")) == KeySpec()
    with pytest.raises(KeyLoadError, match="encrypted and no passphrase"):
        load_private_key(pem)
    with pytest.raises(KeyLoadError, match="wrong passphrase"):
        load_private_key(pem, b"battery staple")


def test_not_pem_is_reported_as_such() -> None:
    with pytest.raises(KeyLoadError, match="not PEM"):
        load_private_key(b"hello")


def test_corrupt_pem_never_echoes_key_bytes() -> None:
    pem = private_key_to_pem(KeySpec().generate())
    body = pem.splitlines()[1]
    corrupt = pem.replace(body, body[:10] + b"!!!!" + body[14:])
    with pytest.raises(KeyLoadError) as caught:
        load_private_key(corrupt)
    assert body[:10].decode() not in str(caught.value)


def test_der_is_pkcs8() -> None:
    key = KeySpec(KeyAlgorithm.RSA, 2048).generate()
    der = private_key_to_der(key)
    assert der[:1] == b"\x30"
    assert isinstance(key, rsa.RSAPrivateKey)


@pytest.mark.parametrize("form", [[], ["-traditional"]], ids=["pkcs8", "traditional"])
def test_loads_what_openssl_genrsa_aes256_writes(tmp_path: Path, form: list[str]) -> None:
    key_file = tmp_path / "ca-key.pem"
    subprocess.run(
        [
            "openssl",
            "genrsa",
            *form,
            "-aes256",
            "-passout",
            "pass:s3cret",
            "-out",
            str(key_file),
            "2048",
        ],
        check=True,
        capture_output=True,
    )
    pem = key_file.read_bytes()
    assert b"ENCRYPTED" in pem
    assert key_spec_of(load_private_key(pem, b"s3cret")) == KeySpec(KeyAlgorithm.RSA, 2048)
    with pytest.raises(KeyLoadError, match="wrong passphrase"):
        load_private_key(pem, b"nope")


@pytest.mark.parametrize(
    "command",
    [
        ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ["ecparam", "-genkey", "-name", "prime256v1", "-noout"],
        ["genrsa", "-traditional", "2048"],
        ["genpkey", "-algorithm", "ED25519"],
    ],
    ids=["pkcs8-ec", "sec1", "pkcs1", "ed25519"],
)
def test_loads_unencrypted_openssl_keys(command: list[str]) -> None:
    pem = subprocess.run(["openssl", *command], check=True, capture_output=True).stdout
    load_private_key(pem)
