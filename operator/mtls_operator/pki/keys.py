"""Private keys: choice of algorithm, generation, PEM encoding and loading."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mtls_operator.pki.errors import KeyLoadError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES: dict[int, type[ec.EllipticCurve]] = {
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
_RSA_SIZES = (2048, 3072, 4096)


class KeyAlgorithm(enum.Enum):
    ECDSA = "ECDSA"
    RSA = "RSA"
    ED25519 = "Ed25519"

    @classmethod
    def parse(cls, text: str) -> KeyAlgorithm:
        return _parse_choice(cls, text, "key algorithm")

    @property
    def default_size(self) -> int | None:
        return {KeyAlgorithm.ECDSA: 256, KeyAlgorithm.RSA: 2048, KeyAlgorithm.ED25519: None}[self]

    @property
    def allowed_sizes(self) -> tuple[int, ...]:
        return {
            KeyAlgorithm.ECDSA: tuple(_CURVES),
            KeyAlgorithm.RSA: _RSA_SIZES,
            KeyAlgorithm.ED25519: (),
        }[self]


class KeyEncoding(enum.Enum):
    """How a private key is written: PKCS8 for every algorithm, or the
    algorithm's traditional format (RSA: PKCS#1, ECDSA: SEC1)."""

    PKCS8 = "PKCS8"
    PKCS1 = "PKCS1"

    @classmethod
    def parse(cls, text: str) -> KeyEncoding:
        return _parse_choice(cls, text, "key encoding")


_Choice = TypeVar("_Choice", KeyAlgorithm, KeyEncoding)


def _parse_choice(choices: type[_Choice], text: str, what: str) -> _Choice:
    """A member by its value, in any case, or a ValueError listing them all."""
    for choice in choices:
        if choice.value.lower() == text.lower():
            return choice
    listed = ", ".join(c.value for c in choices)
    raise ValueError(f"unknown {what} {text!r} (choose one of {listed})")


@dataclass(frozen=True)
class KeySpec:
    """An algorithm and a size that together name one kind of key."""

    algorithm: KeyAlgorithm = KeyAlgorithm.ECDSA
    size: int | None = 256

    @classmethod
    def of(cls, algorithm: KeyAlgorithm, size: int | None = None) -> KeySpec:
        """Build a spec, using the algorithm's default size when none is given."""
        if size is None:
            size = algorithm.default_size
        if algorithm is KeyAlgorithm.ED25519:
            if size is not None:
                raise ValueError("Ed25519 keys have a fixed size; do not give a key size")
        elif size not in algorithm.allowed_sizes:
            allowed = ", ".join(str(s) for s in algorithm.allowed_sizes)
            raise ValueError(
                f"{algorithm.value} key size {size} is not supported (choose {allowed})"
            )
        return cls(algorithm, size)

    @property
    def quick(self) -> bool:
        """Generates and signs in about 0.1 ms (ECDSA, Ed25519), where RSA
        takes tens to hundreds of ms to generate and ms to sign."""
        return self.algorithm is not KeyAlgorithm.RSA

    def generate(self) -> PrivateKey:
        """Generate a fresh key. RSA is slow (tens to hundreds of ms): call it
        from a worker thread in an event-loop program (see `quick`)."""
        if self.algorithm is KeyAlgorithm.ED25519:
            return ed25519.Ed25519PrivateKey.generate()
        if self.size is None:
            raise ValueError(f"{self.algorithm.value} keys need a size")
        if self.algorithm is KeyAlgorithm.ECDSA:
            return ec.generate_private_key(_CURVES[self.size]())
        return rsa.generate_private_key(public_exponent=65537, key_size=self.size)

    def __str__(self) -> str:
        return self.algorithm.value if self.size is None else f"{self.algorithm.value}-{self.size}"


def key_spec_of(key: PrivateKey | PublicKey) -> KeySpec:
    """The spec describing an existing key."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return KeySpec(KeyAlgorithm.RSA, key.key_size)
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return KeySpec(KeyAlgorithm.ECDSA, key.curve.key_size)
    return KeySpec(KeyAlgorithm.ED25519, None)


def signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The digest to sign with: as strong as the key, none for Ed25519."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.key_size <= 256:
            return hashes.SHA256()
        return hashes.SHA384() if key.curve.key_size <= 384 else hashes.SHA512()
    if isinstance(key, rsa.RSAPrivateKey):
        return hashes.SHA256()
    return None


def private_key_to_pem(
    key: PrivateKey,
    encoding: KeyEncoding = KeyEncoding.PKCS8,
    passphrase: bytes | None = None,
) -> bytes:
    """PEM text of the key. PKCS1 means PKCS#1 for RSA and SEC1 for ECDSA."""
    if encoding is KeyEncoding.PKCS1 and isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("Ed25519 keys can only be written as PKCS8")
    fmt = (
        serialization.PrivateFormat.PKCS8
        if encoding is KeyEncoding.PKCS8
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    protection: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, protection)


def private_key_to_der(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER, the form Java and Go read as `key.der`."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_der(key: PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo of the key's public half, for comparisons."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def is_encrypted_pem(pem: bytes) -> bool:
    return b"ENCRYPTED" in pem


def load_private_key(
    pem: bytes, passphrase: bytes | None = None, *, check_rsa: bool = True
) -> PrivateKey:
    """Load a PEM key in PKCS#1, PKCS#8 or SEC1 form, encrypted or not.

    Both encrypted forms that `openssl genrsa -aes256` writes are accepted:
    encrypted PKCS#8 (OpenSSL 3) and the traditional `Proc-Type`/`DEK-Info`
    form (OpenSSL 1.x, or `-traditional`).

    `check_rsa=False` skips the consistency check of an RSA key's private
    numbers (about a quarter of a second for RSA 4096): for callers that only
    compare its public half, never sign with it.
    """
    if b"-----BEGIN" not in pem or b"PRIVATE KEY-----" not in pem:
        raise KeyLoadError(
            "the private key is not PEM (expected '-----BEGIN ... PRIVATE KEY-----')"
        )
    encrypted = is_encrypted_pem(pem)
    if encrypted and not passphrase:
        raise KeyLoadError("the private key is encrypted and no passphrase was given")
    try:
        key = serialization.load_pem_private_key(
            pem,
            password=passphrase if encrypted else None,
            unsafe_skip_rsa_key_validation=not check_rsa,
        )
    except ValueError as err:
        if encrypted:
            raise KeyLoadError("the private key could not be decrypted: wrong passphrase") from err
        raise KeyLoadError(f"the private key could not be parsed: {_short(err)}") from err
    except TypeError as err:
        raise KeyLoadError(f"the private key could not be loaded: {_short(err)}") from err
    if not isinstance(key, PrivateKey):
        raise KeyLoadError(f"unsupported private key type {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size not in _CURVES:
        raise KeyLoadError(f"unsupported elliptic curve {key.curve.name}")
    return key


def _short(err: Exception) -> str:
    """First line of an error from the crypto backend; never key bytes."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]
