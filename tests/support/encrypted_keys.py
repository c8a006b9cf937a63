"""Encrypted PKCS#8 keys with any parameters, written by hand (DER), so that
tests can make the keys a tenant could: an iteration count that takes
minutes to derive, scrypt parameters that take gigabytes, a ciphertext that
nothing can decrypt. Independent of the code under test."""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from mtls_operator.pki import PrivateKey

PBES2 = "1.2.840.113549.1.5.13"
PBKDF2 = "1.2.840.113549.1.5.12"
SCRYPT = "1.3.6.1.4.1.11591.4.11"
HMAC_WITH = {
    "sha1": "1.2.840.113549.2.7",
    "sha224": "1.2.840.113549.2.8",
    "sha256": "1.2.840.113549.2.9",
    "sha384": "1.2.840.113549.2.10",
    "sha512": "1.2.840.113549.2.11",
}
AES_CBC = {
    128: "2.16.840.1.101.3.4.1.2",
    192: "2.16.840.1.101.3.4.1.22",
    256: "2.16.840.1.101.3.4.1.42",
}
DES_EDE3_CBC = "1.2.840.113549.3.7"
PBE_SHA1_3DES = "1.2.840.113549.1.12.1.3"


def tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(encoded)]) + encoded + content


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def integer(value: int) -> bytes:
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def octets(value: bytes) -> bytes:
    return tlv(0x04, value)


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body.extend(reversed(chunk))
    return tlv(0x06, bytes(body))


def algorithm(dotted: str, parameters: bytes | None = None) -> bytes:
    return sequence(oid(dotted), parameters if parameters is not None else tlv(0x05, b""))


def pbkdf2(iterations: int, salt: bytes, prf: str = "sha256") -> bytes:
    return algorithm(PBKDF2, sequence(octets(salt), integer(iterations), algorithm(HMAC_WITH[prf])))


def scrypt(n: int, r: int, p: int, salt: bytes) -> bytes:
    return algorithm(SCRYPT, sequence(octets(salt), integer(n), integer(r), integer(p)))


def pbes2(kdf: bytes, iv: bytes, bits: int = 256) -> bytes:
    return algorithm(PBES2, sequence(kdf, algorithm(AES_CBC[bits], octets(iv))))


def legacy_pbe(iterations: int, salt: bytes) -> bytes:
    return algorithm(PBE_SHA1_3DES, sequence(octets(salt), integer(iterations)))


def pem(encryption: bytes, ciphertext: bytes) -> bytes:
    der = sequence(encryption, octets(ciphertext))
    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n"
        + b"\n".join(lines)
        + b"\n-----END ENCRYPTED PRIVATE KEY-----\n"
    )


def unopenable(encryption: bytes) -> bytes:
    """A key whose header asks for `encryption` and whose ciphertext is noise:
    only the header's cost can be paid before that shows."""
    return pem(encryption, os.urandom(160))


def encrypted_with_pbkdf2(
    key: PrivateKey, passphrase: bytes, iterations: int, prf: str = "sha256", bits: int = 256
) -> bytes:
    """A real encrypted PKCS#8 key with the given PBKDF2 parameters."""
    salt, iv = os.urandom(16), os.urandom(16)
    derived = hashlib.pbkdf2_hmac(prf, passphrase, salt, iterations, bits // 8)
    return pem(pbes2(pbkdf2(iterations, salt, prf), iv, bits), _aes_cbc(key, derived, iv))


def encrypted_with_scrypt(key: PrivateKey, passphrase: bytes, n: int, r: int, p: int) -> bytes:
    salt, iv = os.urandom(16), os.urandom(16)
    derived = hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=2**27, dklen=32)
    return pem(pbes2(scrypt(n, r, p, salt), iv), _aes_cbc(key, derived, iv))


def encrypted_content(padded: bytes, passphrase: bytes, *, triple_des: bool = False) -> bytes:
    """An encrypted PKCS#8 key whose content is `padded` (padded by the
    caller, or not): AES-256-CBC or 3DES-CBC, PBKDF2 with 1,000 iterations."""
    salt = os.urandom(16)
    iv = os.urandom(8 if triple_des else 16)
    derived = hashlib.pbkdf2_hmac("sha256", passphrase, salt, 1000, 24 if triple_des else 32)
    cipher = TripleDES(derived) if triple_des else algorithms.AES(derived)
    encryptor = Cipher(cipher, modes.CBC(iv)).encryptor()
    scheme = algorithm(DES_EDE3_CBC if triple_des else AES_CBC[256], octets(iv))
    return pem(
        algorithm(PBES2, sequence(pbkdf2(1000, salt), scheme)),
        encryptor.update(padded) + encryptor.finalize(),
    )


def _aes_cbc(key: PrivateKey, derived: bytes, iv: bytes) -> bytes:
    plain = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(derived), modes.CBC(iv)).encryptor()
    return encryptor.update(padded) + encryptor.finalize()
