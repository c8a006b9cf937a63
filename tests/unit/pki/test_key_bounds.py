"""What reading a private key may cost is bounded before the work starts:
whoever writes a CA Secret chooses a passphrase-encrypted key's derivation
parameters (minutes of CPU at PBKDF2's largest iteration count, gigabytes at
scrypt's), and an RSA key's size (a minute to check an RSA-16384 key). Keys
that the usual tools write are read as before."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from mtls_operator.pki import KeyAlgorithm, KeyLoadError, KeySpec, load_private_key
from mtls_operator.pki.encrypted_keys import (
    MAX_LEGACY_ITERATIONS,
    MAX_PBKDF2_ITERATIONS,
    MAX_SCRYPT_MEMORY,
    MAX_SCRYPT_WORK,
)
from mtls_operator.pki.keys import MAX_RSA_KEY_BITS, key_spec_of, private_key_to_pem

from support import encrypted_keys as ek

SALT = os.urandom(16)
IV = os.urandom(16)
LARGEST = 2**31 - 1
PBES2_PARAMETERS = ek.sequence(ek.pbkdf2(10, SALT), ek.algorithm(ek.AES_CBC[256], ek.octets(IV)))


def encrypted(encryption: bytes) -> bytes:
    """An EncryptedPrivateKeyInfo: `encryption` and noise to decrypt."""
    return ek.sequence(encryption, ek.octets(os.urandom(160)))


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    generated = KeySpec(KeyAlgorithm.RSA, 2048).generate()
    assert isinstance(generated, rsa.RSAPrivateKey)
    return generated


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("encryption", "message"),
    [
        (
            ek.pbes2(ek.pbkdf2(LARGEST, SALT), IV),
            f"the private key's PBKDF2 iteration count {LARGEST} is more than the "
            f"{MAX_PBKDF2_ITERATIONS} accepted",
        ),
        (
            ek.pbes2(ek.pbkdf2(MAX_PBKDF2_ITERATIONS + 1, SALT, "sha1"), IV),
            f"the private key's PBKDF2 iteration count {MAX_PBKDF2_ITERATIONS + 1} is more than "
            f"the {MAX_PBKDF2_ITERATIONS} accepted",
        ),
        (
            ek.pbes2(ek.scrypt(2**20, 8, 1, SALT), IV),
            f"the private key's scrypt memory (N={2**20}, r=8, p=1) is 1073744896 bytes, more "
            f"than the {MAX_SCRYPT_MEMORY} accepted",
        ),
        (
            ek.pbes2(ek.scrypt(2**14, 8, 64, SALT), IV),
            f"the private key's scrypt work N*r*p (N={2**14}, r=8, p=64) is {2**23}, more than "
            f"the {MAX_SCRYPT_WORK} accepted",
        ),
        (
            ek.legacy_pbe(LARGEST, SALT),
            f"the private key's PKCS#12 iteration count {LARGEST} is more than the "
            f"{MAX_LEGACY_ITERATIONS} accepted",
        ),
    ],
    ids=["pbkdf2-largest", "pbkdf2-sha1-over", "scrypt-memory", "scrypt-work", "pkcs12-largest"],
)
def test_a_key_that_costs_too_much_to_open_is_refused_before_the_work(
    encryption: bytes, message: str
) -> None:
    # Noise as ciphertext: any work done before the refusal would only
    # find out at the end that it was for nothing.
    with pytest.raises(KeyLoadError) as caught:
        load_private_key(ek.unopenable(encryption), b"whatever")
    assert str(caught.value).startswith(message + " (")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("encryption", "message"),
    [
        (
            ek.pbes2(ek.scrypt(3, 8, 1, SALT), IV),
            "the private key's scrypt parameters are invalid (N=3, r=8, p=1)",
        ),
        (
            # OpenSSL (and hashlib) refuse N >= 2^(16r): not a ValueError, not retried.
            ek.pbes2(ek.scrypt(2**16, 1, 1, SALT), IV),
            "the private key's scrypt parameters are invalid (N=65536, r=1, p=1)",
        ),
        (
            ek.pbes2(ek.pbkdf2(0, SALT), IV),
            "the private key's PBKDF2 iteration count 0 is invalid",
        ),
        (
            ek.algorithm("1.2.840.113549.1.5.3", ek.sequence(ek.octets(SALT[:8]), ek.integer(1))),
            "the private key is encrypted with 1.2.840.113549.1.5.3, which is not supported "
            "(re-encrypt it: openssl pkcs8 -topk8 -v2 aes-256-cbc)",
        ),
        (
            ek.algorithm(
                ek.PBES2,
                ek.sequence(ek.pbkdf2(10, SALT), ek.algorithm("1.2.392.200011.61.1.1.1.4")),
            ),
            "the private key is encrypted with 1.2.392.200011.61.1.1.1.4, which is not "
            "supported (re-encrypt it: openssl pkcs8 -topk8 -v2 aes-256-cbc)",
        ),
    ],
    ids=[
        "scrypt-n-not-power-of-two",
        "scrypt-n-too-large-for-r",
        "no-iterations",
        "pbes1-md5-des",
        "camellia",
    ],
)
def test_a_key_encrypted_in_a_way_not_read_says_how(encryption: bytes, message: str) -> None:
    with pytest.raises(KeyLoadError) as caught:
        load_private_key(ek.unopenable(encryption), b"whatever")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30",
        b"\x30\x84\xff\xff\xff\xff",
        b"\x30\x80\x00\x00",
        b"\x30\x03\x02\x01\x00",
        b"\x04\x00",
        ek.sequence(ek.pbes2(ek.pbkdf2(10, SALT), IV)),
        ek.sequence(ek.algorithm(ek.PBES2, ek.integer(5)), ek.octets(b"x")),
        ek.sequence(ek.pbes2(ek.pbkdf2(10, SALT), IV), ek.octets(b"x"), ek.octets(b"y")),
        encrypted(ek.algorithm(ek.PBES2, PBES2_PARAMETERS + ek.integer(1))),
        encrypted(
            ek.algorithm(
                ek.PBES2,
                ek.sequence(
                    ek.pbkdf2(10, SALT),
                    ek.algorithm(ek.AES_CBC[256], ek.octets(IV) + ek.integer(1)),
                ),
            )
        ),
        encrypted(
            ek.pbes2(
                ek.algorithm(
                    ek.PBKDF2, ek.sequence(ek.octets(SALT), ek.integer(10)) + ek.integer(1)
                ),
                IV,
            )
        ),
        encrypted(
            ek.pbes2(
                ek.algorithm(
                    ek.PBKDF2,
                    ek.sequence(
                        ek.octets(SALT),
                        ek.integer(10),
                        ek.algorithm(ek.HMAC_WITH["sha256"], ek.integer(1)),
                    ),
                ),
                IV,
            )
        ),
    ],
    ids=[
        "empty",
        "truncated",
        "length-past-end",
        "indefinite",
        "integer-not-sequence",
        "octets",
        "no-ciphertext",
        "bad-parameters",
        "trailing",
        "trailing-pbes2-parameters",
        "trailing-cipher-parameters",
        "trailing-kdf-parameters",
        "prf-parameters",
    ],
)
def test_a_malformed_encrypted_key_is_refused_in_one_line(der: bytes) -> None:
    text = (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + base64.b64encode(der)
        + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyLoadError) as caught:
        load_private_key(text, b"whatever")
    assert str(caught.value).startswith("the private key could not be parsed: ")


@pytest.mark.parametrize(
    "options",
    [
        ["-v2", "aes-256-cbc"],
        ["-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1"],
        ["-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512"],
        ["-v2", "aes-256-cbc", "-v2prf", "hmacWithSHA384", "-iter", "100000"],
        ["-v2", "des3"],
        ["-scrypt"],
        ["-scrypt", "-scrypt_N", "16384", "-scrypt_r", "8", "-scrypt_p", "4"],
        ["-v1", "PBE-SHA1-3DES"],
    ],
    ids=[
        "aes256",
        "aes128-sha1",
        "aes192-sha512",
        "sha384-100k",
        "des3",
        "scrypt",
        "scrypt-p4",
        "pkcs12-3des",
    ],
)
def test_reads_what_openssl_pkcs8_writes(
    tmp_path: Path, key: rsa.RSAPrivateKey, options: list[str]
) -> None:
    plain = tmp_path / "key.pem"
    plain.write_bytes(private_key_to_pem(key))
    pem = subprocess.run(
        ["openssl", "pkcs8", "-topk8", "-in", str(plain), "-passout", "pass:s3cret", *options],
        check=True,
        capture_output=True,
    ).stdout
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = load_private_key(pem, b"s3cret")
    assert private_key_to_pem(loaded) == private_key_to_pem(key)
    with pytest.raises(
        KeyLoadError, match=r"^the private key could not be decrypted: wrong passphrase$"
    ):
        load_private_key(pem, b"S3cret")


@pytest.mark.parametrize(
    "pem",
    [
        lambda k: ek.encrypted_with_pbkdf2(k, b"s3cret", MAX_PBKDF2_ITERATIONS),
        lambda k: ek.encrypted_with_pbkdf2(k, b"s3cret", 1000, "sha224", 128),
        lambda k: ek.encrypted_with_scrypt(k, b"s3cret", 2**15, 8, 1),
        lambda k: private_key_to_pem(k, passphrase=b"s3cret"),
    ],
    ids=["pbkdf2-at-the-bound", "pbkdf2-sha224", "scrypt-32k", "cryptography"],
)
def test_reads_keys_up_to_the_bounds(key: rsa.RSAPrivateKey, pem: object) -> None:
    text = pem(key)  # type: ignore[operator]
    assert private_key_to_pem(load_private_key(text, b"s3cret")) == private_key_to_pem(key)


def test_the_pem_block_read_is_the_first_private_key_block(key: rsa.RSAPrivateKey) -> None:
    encrypted = ek.unopenable(ek.pbes2(ek.pbkdf2(LARGEST, SALT), IV))
    plain = private_key_to_pem(key)
    # The plain key comes first: the encrypted one after it is never looked at.
    assert private_key_to_pem(load_private_key(b"junk\n" + plain + encrypted, b"x")) == plain
    with pytest.raises(KeyLoadError, match="PBKDF2 iteration count"):
        load_private_key(encrypted + plain, b"x")


# --- RSA keys ---


def rsa_pem(p: int, q: int, e: int = 65537) -> bytes:
    """An RSA key from its primes (or whatever is given as primes), as
    PKCS#1 written by hand: cryptography would check what it is given."""
    n = p * q
    lam = (p - 1) * (q - 1)
    d = pow(e, -1, lam)
    der = ek.sequence(
        ek.integer(0),
        ek.integer(n),
        ek.integer(e),
        ek.integer(d),
        ek.integer(p),
        ek.integer(q),
        ek.integer(d % (p - 1)),
        ek.integer(d % (q - 1)),
        ek.integer(pow(q, -1, p)),
    )
    body = base64.encodebytes(der)
    return b"-----BEGIN RSA PRIVATE KEY-----\n" + body + b"-----END RSA PRIVATE KEY-----\n"


def test_an_rsa_key_larger_than_any_ca_uses_is_refused_unchecked(key: rsa.RSAPrivateKey) -> None:
    # A real prime and a large odd number: what a check would take a
    # minute over (primality of an 8000-bit number) is never looked at.
    p = key.private_numbers().p
    q = (1 << (MAX_RSA_KEY_BITS + 16 - p.bit_length())) + 65537 * 2 + 1
    while (q - 1) % 65537 == 0:
        q += 2
    with pytest.raises(KeyLoadError) as caught:
        load_private_key(rsa_pem(p, q))
    assert str(caught.value) == (
        f"the private key is RSA-{(p * q).bit_length()}, larger than the "
        f"{MAX_RSA_KEY_BITS} bits accepted"
    )


def test_an_rsa_key_whose_halves_disagree_is_refused(key: rsa.RSAPrivateKey) -> None:
    numbers = key.private_numbers()
    # Consistent numbers around a composite "prime": signing with it makes
    # signatures that its own public key refuses.
    composite = numbers.q * 3
    with pytest.raises(KeyLoadError, match=r"^the private key is not a consistent RSA key"):
        load_private_key(rsa_pem(numbers.p, composite))
    assert key_spec_of(load_private_key(rsa_pem(numbers.p, numbers.q))) == KeySpec(
        KeyAlgorithm.RSA, 2048
    )


def test_padding_longer_than_the_cipher_block_is_a_wrong_passphrase() -> None:
    # 3DES has blocks of 8 bytes: 16 bytes of 0x10 are no padding of its.
    # (An Ed25519 key's 48 bytes fill whole blocks: what is left is a key.)
    der = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    content = der + bytes([16]) * 16
    with pytest.raises(KeyLoadError, match=r"^the private key could not be decrypted: wrong pass"):
        load_private_key(ek.encrypted_content(content, b"s3cret", triple_des=True), b"s3cret")


def test_a_decrypted_value_that_is_no_key_is_not_a_wrong_passphrase() -> None:
    padder = padding.PKCS7(128).padder()
    content = padder.update(ek.sequence(ek.integer(5))) + padder.finalize()
    with pytest.raises(KeyLoadError) as caught:
        load_private_key(ek.encrypted_content(content, b"s3cret"), b"s3cret")
    assert str(caught.value).startswith("the private key could not be parsed: ")
    with pytest.raises(KeyLoadError, match="wrong passphrase"):
        load_private_key(ek.encrypted_content(content, b"s3cret"), b"other")
