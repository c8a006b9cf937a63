"""PKCS#10 requests: the public key they carry, when it is one we sign."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mtls_operator.pki.keys import PublicKey

# What PodCertificateRequests may carry (the API server's list), RSA below
# 3072 bits excluded as it excludes them.
_RSA_SIZES = (3072, 4096)
_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)


def public_key_of_request(der: bytes) -> PublicKey | None:
    """The subject public key of a DER PKCS#10 request; None when the request
    does not parse or its key is of a kind not signed here. (The API server
    has checked the request's signature already.)"""
    try:
        key = x509.load_der_x509_csr(der).public_key()
    except ValueError:
        return None
    if isinstance(key, rsa.RSAPublicKey):
        return key if key.key_size in _RSA_SIZES else None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key if isinstance(key.curve, _CURVES) else None
    return key if isinstance(key, ed25519.Ed25519PublicKey) else None
