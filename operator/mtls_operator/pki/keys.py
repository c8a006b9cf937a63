"""Private keys: choice of algorithm, generation, PEM encoding and loading."""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from mtls_operator.pki.encrypted_keys import MalformedKey, WrongPassphrase, decrypt_pkcs8
from mtls_operator.pki.errors import KeyLoadError

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_CURVES: dict[int, type[ec.EllipticCurve]] = {
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}
_RSA_SIZES = (2048, 3072, 4096)
# The largest RSA key read (CA keys; issued keys are at most 4096 bits).
# Checking an RSA-8192 key's primes takes OpenSSL 8 s, an RSA-16384 one's a
# minute, and signing with it half a second.
MAX_RSA_KEY_BITS: Final = 8192


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
    """Load a PEM key in PKCS#1, PKCS#8 or SEC1 form, encrypted or not: the
    first PRIVATE KEY block in `pem`.

    Both encrypted forms that `openssl genrsa -aes256` writes are accepted:
    encrypted PKCS#8 (OpenSSL 3) and the traditional `Proc-Type`/`DEK-Info`
    form (OpenSSL 1.x, or `-traditional`). What opening an encrypted key may
    cost is bounded (see `encrypted_keys`), and so is an RSA key's size.

    Up to about half a second of CPU for an encrypted key at the bounds
    (without the interpreter lock): call it from a worker thread in an
    event-loop program when the key comes from someone else.

    `check_rsa=False` skips the consistency check of an RSA key's private
    numbers: for callers that only compare its public half, never sign
    with it.
    """
    label, block = _private_key_block(pem)
    if label == _PKCS8_ENCRYPTED:
        if not passphrase:
            raise KeyLoadError("the private key is encrypted and no passphrase was given")
        key = _open_pkcs8(_pem_body(block), passphrase)
    else:
        encrypted = is_encrypted_pem(block)
        if encrypted and not passphrase:
            raise KeyLoadError("the private key is encrypted and no passphrase was given")
        key = _loaded(
            lambda: serialization.load_pem_private_key(
                block,
                password=passphrase if encrypted else None,
                # Checked below, at a cost bounded by the key's size.
                unsafe_skip_rsa_key_validation=True,
            ),
            encrypted=encrypted,
        )
    return _usable(key, check_rsa=check_rsa)


_PKCS8_ENCRYPTED = b"ENCRYPTED PRIVATE KEY"
# A PKCS#1 v1.5 SHA-256 signature needs a modulus of 62 bytes at least.
_SMALLEST_PROBED_RSA = 512
_BEGIN, _END, _DASHES = b"-----BEGIN ", b"-----END ", b"-----"


def _private_key_block(pem: bytes) -> tuple[bytes, bytes]:
    """The label and the text (from BEGIN to END) of the first PRIVATE KEY
    block. Found by plain searches, each from where the last ended: linear
    in the text's length whatever it holds."""
    start = pem.find(_BEGIN)
    while start >= 0:
        label_start = start + len(_BEGIN)
        label_end = pem.find(_DASHES, label_start)
        if label_end < 0:
            break
        label = pem[label_start:label_end]
        if label.endswith(b"PRIVATE KEY") and len(label) <= len(_PKCS8_ENCRYPTED):
            end_marker = _END + label + _DASHES
            end = pem.find(end_marker, label_end)
            if end < 0:
                break
            return label, pem[start : end + len(end_marker)]
        start = pem.find(_BEGIN, label_end)
    raise KeyLoadError("the private key is not PEM (expected '-----BEGIN ... PRIVATE KEY-----')")


def _pem_body(block: bytes) -> bytes:
    lines = block.splitlines()[1:-1]
    if any(b":" in line for line in lines):
        raise MalformedKey("an encrypted PKCS#8 key carries no PEM headers")
    try:
        return base64.b64decode(b"".join(b"".join(line.split()) for line in lines), validate=True)
    except binascii.Error as err:
        raise MalformedKey("the PEM text is not base64") from err


def _open_pkcs8(der: bytes, passphrase: bytes) -> object:
    plain = decrypt_pkcs8(der, passphrase)
    if plain is None:  # the legacy scheme, bounded: cryptography opens it
        return _loaded(
            lambda: serialization.load_der_private_key(
                der, passphrase, unsafe_skip_rsa_key_validation=True
            ),
            encrypted=True,
        )
    # Decrypted to one DER value (what a wrong passphrase does not leave):
    # whatever is wrong with it is wrong with the key, not the passphrase.
    return _loaded(
        lambda: serialization.load_der_private_key(
            plain, None, unsafe_skip_rsa_key_validation=True
        ),
        encrypted=False,
    )


def _loaded(load: Callable[[], object], *, encrypted: bool) -> object:
    try:
        return load()
    except ValueError as err:
        if encrypted:
            raise WrongPassphrase from err
        raise KeyLoadError(f"the private key could not be parsed: {_short(err)}") from err
    except TypeError as err:
        raise KeyLoadError(f"the private key could not be loaded: {_short(err)}") from err
    except UnsupportedAlgorithm as err:
        raise KeyLoadError(f"the private key could not be loaded: {_short(err)}") from err


def _usable(key: object, *, check_rsa: bool) -> PrivateKey:
    if not isinstance(key, PrivateKey):
        raise KeyLoadError(f"unsupported private key type {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size not in _CURVES:
        raise KeyLoadError(f"unsupported elliptic curve {key.curve.name}")
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size > MAX_RSA_KEY_BITS:
            raise KeyLoadError(
                f"the private key is RSA-{key.key_size}, larger than the "
                f"{MAX_RSA_KEY_BITS} bits accepted"
            )
        if check_rsa and not _consistent_rsa(key):
            raise KeyLoadError(
                "the private key is not a consistent RSA key "
                "(its private numbers do not fit its public key)"
            )
    return key


def _consistent_rsa(key: rsa.RSAPrivateKey) -> bool:
    """What OpenSSL's RSA check finds, but for the primality of p and q,
    which costs seconds to a minute for large keys while holding the
    interpreter lock: the numbers fit together (microseconds), and a
    signature made with the private half passes the public half (a private
    operation, which releases the lock)."""
    numbers = key.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    fits = (
        p > 2
        and q > 2
        and p % 2 == 1
        and q % 2 == 1
        and p * q == n
        and 1 < e < 2**64
        and e % 2 == 1
        and 1 < d < n
        and (d * e) % (p - 1) == 1
        and (d * e) % (q - 1) == 1
        and numbers.dmp1 == d % (p - 1)
        and numbers.dmq1 == d % (q - 1)
        and (numbers.iqmp * q) % p == 1
    )
    if not fits:
        return False
    if key.key_size < _SMALLEST_PROBED_RSA:
        return True  # too small to carry the probe's signature; its numbers fit
    probe = b"mtls-operator key check"
    signature = key.sign(probe, padding.PKCS1v15(), hashes.SHA256())
    try:
        key.public_key().verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def _short(err: Exception) -> str:
    """First line of an error from the crypto backend; never key bytes."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]
