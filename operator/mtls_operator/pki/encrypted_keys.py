"""Passphrase-encrypted PKCS#8 keys, opened at a cost bounded before the work.

What opening a key costs is chosen by whoever wrote it: PBKDF2's iteration
count and scrypt's N, r and p are in the key's header (at the largest,
minutes of CPU or gigabytes of memory), and a wrong passphrase costs the
same. The header is read first, with a small DER reader, and refused over
the bounds below. Then the key is derived with `hashlib`, which releases
the interpreter lock (the `cryptography` loader holds it throughout), so
that a caller in a worker thread never stalls an event loop; only the
legacy PKCS#12 scheme is left to `cryptography`, under a bound low enough
for that.

The traditional PEM form (`Proc-Type: 4,ENCRYPTED`, `DEK-Info`) derives its
key with one MD5 round (EVP_BytesToKey): it costs nothing to bound.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

from mtls_operator.pki.errors import KeyLoadError

# About a third of a second of one core (PBKDF2-HMAC-SHA256), twice that
# with SHA-1 and a 256-bit key (two blocks); above OWASP's 600,000, which
# careful tools follow; OpenSSL and `cryptography` write 2,048.
MAX_PBKDF2_ITERATIONS: Final = 1_000_000
# scrypt's memory, counted as OpenSSL counts it (128 * r * (N + p + 2)
# bytes): N=2^15 with r=8 fits, OpenSSL's own default is N=2^14.
MAX_SCRYPT_MEMORY: Final = 64 * 1024 * 1024
# scrypt's work, N * r * p: about as long as the PBKDF2 bound.
MAX_SCRYPT_WORK: Final = 2**20
# The PKCS#12 scheme (`openssl pkcs8 -v1 PBE-SHA1-3DES`, 2,048 by default)
# is decrypted by `cryptography`, holding the interpreter lock: 10,000
# iterations hold it for about 10 ms.
MAX_LEGACY_ITERATIONS: Final = 10_000

_REENCRYPT = "re-encrypt it: openssl pkcs8 -topk8 -v2 aes-256-cbc"

_PBES2 = "1.2.840.113549.1.5.13"
_PBKDF2 = "1.2.840.113549.1.5.12"
_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_PRF_DIGESTS = {
    "1.2.840.113549.2.7": "sha1",
    "1.2.840.113549.2.8": "sha224",
    "1.2.840.113549.2.9": "sha256",
    "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
_DEFAULT_PRF = "sha1"  # RFC 8018: PBKDF2's PRF when none is named
# Cipher OID -> (key length, a cipher for a key).
_CIPHERS: dict[str, tuple[int, Callable[[bytes], BlockCipherAlgorithm]]] = {
    "2.16.840.1.101.3.4.1.2": (16, algorithms.AES),
    "2.16.840.1.101.3.4.1.22": (24, algorithms.AES),
    "2.16.840.1.101.3.4.1.42": (32, algorithms.AES),
    "1.2.840.113549.3.7": (24, TripleDES),
}
# pbeWithSHAAnd3-KeyTripleDES-CBC and the other PKCS#12 schemes.
_PKCS12_PBE_PREFIX = "1.2.840.113549.1.12.1."

_SEQUENCE, _INTEGER, _OCTET_STRING, _NULL, _OID = 0x30, 0x02, 0x04, 0x05, 0x06
# No parameter here needs more (an iteration count over 2^64 is refused anyway).
_MAX_INTEGER_BYTES = 9


class MalformedKey(KeyLoadError):
    def __init__(self, what: str) -> None:
        super().__init__(f"the private key could not be parsed: {what}")


# --- A DER reader: just what EncryptedPrivateKeyInfo needs. ---


class _Der:
    """The elements of one DER constructed value, read in order."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def read(self, tag: int) -> bytes:
        """The content of the next element, which must have `tag`."""
        found, content = self.any()
        if found != tag:
            raise MalformedKey(f"expected DER tag {tag:#04x}, found {found:#04x}")
        return content

    def any(self) -> tuple[int, bytes]:
        data, offset = self._data, self._offset
        if offset + 2 > len(data):
            raise MalformedKey("the DER data ends early")
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 4:
                raise MalformedKey("a DER length is indefinite or too large")
            if offset + count > len(data):
                raise MalformedKey("the DER data ends early")
            length = int.from_bytes(data[offset : offset + count], "big")
            offset += count
        if offset + length > len(data):
            raise MalformedKey("the DER data ends early")
        self._offset = offset + length
        return tag, data[offset : offset + length]

    def more(self) -> bool:
        return self._offset < len(self._data)

    def next_tag(self) -> int | None:
        return self._data[self._offset] if self.more() else None

    def end(self) -> None:
        if self.more():
            raise MalformedKey("unexpected data after a DER value")

    def sequence(self) -> _Der:
        return _Der(self.read(_SEQUENCE))

    def integer(self) -> int:
        content = self.read(_INTEGER)
        if not content or len(content) > _MAX_INTEGER_BYTES or content[0] & 0x80:
            raise MalformedKey("a DER integer is empty, negative or too large")
        return int.from_bytes(content, "big")

    def oid(self) -> str:
        return _oid_text(self.read(_OID))

    def algorithm(self) -> tuple[str, _Der]:
        """An AlgorithmIdentifier: its OID and a reader of its parameters."""
        identifier = self.sequence()
        oid = identifier.oid()
        return oid, identifier


def _oid_text(content: bytes) -> str:
    if not content or len(content) > 64:
        raise MalformedKey("an object identifier is empty or too long")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if content[-1] & 0x80:
        raise MalformedKey("an object identifier ends early")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


# --- What a key's header asks for, and whether that is affordable. ---


@dataclass(frozen=True)
class Pbkdf2:
    salt: bytes
    iterations: int
    digest: str
    key_length: int | None


@dataclass(frozen=True)
class Scrypt:
    salt: bytes
    n: int
    r: int
    p: int
    key_length: int | None

    @property
    def memory(self) -> int:
        """Bytes, as OpenSSL counts them."""
        return 128 * self.r * (self.n + self.p + 2)

    @property
    def work(self) -> int:
        return self.n * self.r * self.p

    def __str__(self) -> str:
        return f"N={self.n}, r={self.r}, p={self.p}"


@dataclass(frozen=True)
class Pbes2:
    """PBES2 (RFC 8018): a key derivation, then a CBC cipher."""

    kdf: Pbkdf2 | Scrypt
    cipher: str
    iv: bytes


@dataclass(frozen=True)
class LegacyPbe:
    """A PKCS#12 password-based scheme, which `cryptography` opens."""

    iterations: int


@dataclass(frozen=True)
class EncryptedKey:
    encryption: Pbes2 | LegacyPbe
    ciphertext: bytes


def parse_encrypted_key(der: bytes) -> EncryptedKey:
    """The header and ciphertext of an EncryptedPrivateKeyInfo (RFC 5958).
    Raises KeyLoadError for what is malformed or not supported."""
    outer = _Der(der)
    info = outer.sequence()
    outer.end()
    scheme, parameters = info.algorithm()
    ciphertext = info.read(_OCTET_STRING)
    info.end()
    if scheme != _PBES2 and not scheme.startswith(_PKCS12_PBE_PREFIX):
        raise _unsupported(scheme)
    fields = parameters.sequence()
    parameters.end()
    if scheme == _PBES2:
        return EncryptedKey(_pbes2(fields), ciphertext)
    fields.read(_OCTET_STRING)  # the salt
    iterations = fields.integer()
    fields.end()
    return EncryptedKey(LegacyPbe(iterations), ciphertext)


def _pbes2(fields: _Der) -> Pbes2:
    kdf_oid, kdf_parameters = fields.algorithm()
    cipher, cipher_parameters = fields.algorithm()
    fields.end()
    kdf: Pbkdf2 | Scrypt
    if kdf_oid == _PBKDF2:
        kdf = _pbkdf2(kdf_parameters.sequence())
    elif kdf_oid == _SCRYPT:
        kdf = _scrypt(kdf_parameters.sequence())
    else:
        raise _unsupported(kdf_oid)
    kdf_parameters.end()
    if cipher not in _CIPHERS:
        raise _unsupported(cipher)
    iv = cipher_parameters.read(_OCTET_STRING)
    cipher_parameters.end()
    return Pbes2(kdf, cipher, iv)


def _pbkdf2(fields: _Der) -> Pbkdf2:
    salt = fields.read(_OCTET_STRING)
    iterations = fields.integer()
    key_length = fields.integer() if fields.next_tag() == _INTEGER else None
    digest = _DEFAULT_PRF
    if fields.more():
        prf, prf_parameters = fields.algorithm()
        if prf not in _PRF_DIGESTS:
            raise _unsupported(prf)
        digest = _PRF_DIGESTS[prf]
        if prf_parameters.more():
            prf_parameters.read(_NULL)
        prf_parameters.end()
    fields.end()
    return Pbkdf2(salt, iterations, digest, key_length)


def _scrypt(fields: _Der) -> Scrypt:
    salt = fields.read(_OCTET_STRING)
    n, r, p = fields.integer(), fields.integer(), fields.integer()
    key_length = fields.integer() if fields.more() else None
    fields.end()
    return Scrypt(salt, n, r, p, key_length)


def _unsupported(oid: str) -> KeyLoadError:
    return KeyLoadError(
        f"the private key is encrypted with {oid}, which is not supported ({_REENCRYPT})"
    )


def cost_problem(key: EncryptedKey) -> str | None:
    """Why opening `key` would cost more than the bounds allow, or be
    impossible, in one line naming the parameter; None if it is fine."""
    encryption = key.encryption
    if isinstance(encryption, LegacyPbe):
        return _iterations_problem("PKCS#12", encryption.iterations, MAX_LEGACY_ITERATIONS)
    kdf = encryption.kdf
    if isinstance(kdf, Pbkdf2):
        return _iterations_problem("PBKDF2", kdf.iterations, MAX_PBKDF2_ITERATIONS)
    # N < 2^(16r) too (RFC 7914): hashlib (OpenSSL) refuses the rest with a bare ValueError.
    if (
        kdf.n < 2
        or kdf.n & (kdf.n - 1)
        or kdf.r < 1
        or kdf.p < 1
        or kdf.n.bit_length() > 16 * kdf.r
    ):
        return f"the private key's scrypt parameters are invalid ({kdf})"
    if kdf.memory > MAX_SCRYPT_MEMORY:
        return (
            f"the private key's scrypt memory ({kdf}) is {kdf.memory} bytes, more than the "
            f"{MAX_SCRYPT_MEMORY} accepted ({_REENCRYPT})"
        )
    if kdf.work > MAX_SCRYPT_WORK:
        return (
            f"the private key's scrypt work N*r*p ({kdf}) is {kdf.work}, more than the "
            f"{MAX_SCRYPT_WORK} accepted ({_REENCRYPT})"
        )
    return None


def _iterations_problem(scheme: str, iterations: int, bound: int) -> str | None:
    if iterations < 1:
        return f"the private key's {scheme} iteration count {iterations} is invalid"
    if iterations > bound:
        return (
            f"the private key's {scheme} iteration count {iterations} is more than the "
            f"{bound} accepted ({_REENCRYPT} -iter 100000)"
        )
    return None


# --- Opening. ---


def decrypt_pkcs8(der: bytes, passphrase: bytes) -> bytes | None:
    """The unencrypted PKCS#8 DER inside `der` (one DER SEQUENCE), or None
    when `cryptography` must open it (the legacy scheme, already bounded).
    Raises KeyLoadError: over a bound, malformed, or a wrong passphrase.

    CPU-heavy for as long as the bounds allow: call it from a worker thread
    in an event-loop program (the derivation releases the interpreter lock).
    """
    key = parse_encrypted_key(der)
    problem = cost_problem(key)
    if problem is not None:
        raise KeyLoadError(problem)
    encryption = key.encryption
    if isinstance(encryption, LegacyPbe):
        return None
    key_length, cipher = _CIPHERS[encryption.cipher]
    try:
        algorithm = cipher(_derive(encryption.kdf, passphrase, key_length))
    except ValueError as err:  # parameters hashlib (OpenSSL) refuses, past the checks above
        raise MalformedKey(f"the key derivation refused its parameters ({err})") from err
    try:
        decryptor = Cipher(algorithm, modes.CBC(encryption.iv)).decryptor()
        padded = decryptor.update(key.ciphertext) + decryptor.finalize()
    except ValueError as err:  # an IV or ciphertext of the wrong length
        raise MalformedKey("the encrypted data does not fit its cipher") from err
    plain = _unpadded(padded, algorithm.block_size // 8)
    if not _is_one_sequence(plain):
        raise WrongPassphrase  # noise that happened to end in valid padding
    return plain


def _derive(kdf: Pbkdf2 | Scrypt, passphrase: bytes, key_length: int) -> bytes:
    if kdf.key_length is not None and kdf.key_length != key_length:
        raise MalformedKey("the key derivation's key length does not fit its cipher")
    if isinstance(kdf, Pbkdf2):
        return hashlib.pbkdf2_hmac(kdf.digest, passphrase, kdf.salt, kdf.iterations, key_length)
    return hashlib.scrypt(
        passphrase,
        salt=kdf.salt,
        n=kdf.n,
        r=kdf.r,
        p=kdf.p,
        # Above the bound checked: OpenSSL's own count differs by a block.
        maxmem=2 * MAX_SCRYPT_MEMORY,
        dklen=key_length,
    )


def _unpadded(padded: bytes, block_size: int) -> bytes:
    """Without the PKCS#7 padding; bad padding means a wrong passphrase
    (or a damaged key: the same to whoever supplied it)."""
    pad = padded[-1] if padded else 0
    if not 1 <= pad <= block_size or not hmac.compare_digest(padded[-pad:], bytes([pad]) * pad):
        raise WrongPassphrase
    return padded[:-pad]


def _is_one_sequence(der: bytes) -> bool:
    """Whether `der` is one DER SEQUENCE, as a PrivateKeyInfo is."""
    reader = _Der(der)
    try:
        reader.sequence()
        reader.end()
    except MalformedKey:
        return False
    return True


class WrongPassphrase(KeyLoadError):
    def __init__(self) -> None:
        super().__init__("the private key could not be decrypted: wrong passphrase")
