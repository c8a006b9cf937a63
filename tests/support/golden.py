"""The committed 0.1.0 fixtures (`tests/data/v0_1_0/secrets.json`), with
the key-bearing data rebuilt from the seeds they name."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import pkcs12

from mtls_operator.pki import (
    CertificateAuthority,
    KeyAlgorithm,
    KeyEncoding,
    KeySpec,
    PrivateKey,
    load_ca,
    load_certificates,
    private_key_to_pem,
)
from mtls_operator.pki.keys import key_spec_of, private_key_to_der

from support.paths import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "data" / "v0_1_0" / "secrets.json"
_CURVES: dict[int, type[ec.EllipticCurve]] = {
    256: ec.SECP256R1,
    384: ec.SECP384R1,
    521: ec.SECP521R1,
}


def derived_key(seed: str, spec: KeySpec) -> PrivateKey:
    """The key `generate.py` derived from `seed` (not a secret: test data)."""
    digest = hashlib.sha512(seed.encode()).digest()
    if spec.algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.from_private_bytes(digest[:32])
    if spec.algorithm is KeyAlgorithm.ECDSA and spec.size is not None:
        value = int.from_bytes(digest, "big") % (2 ** (spec.size - 1))
        return ec.derive_private_key(value, _CURVES[spec.size]())
    raise ValueError(f"no derivation for {spec}")


@dataclass(frozen=True)
class GoldenCase:
    name: str
    uid: str
    spec: dict[str, Any]
    spec_hash: str
    secret: dict[str, Any]
    status: dict[str, Any]


@dataclass(frozen=True)
class Golden:
    namespace: str
    issued_at: datetime.datetime
    ca: CertificateAuthority
    ca_key_pem: bytes
    ca_certificate_pem: bytes
    keystore_password: bytes
    cases: tuple[GoldenCase, ...]
    hash_only: tuple[tuple[str, dict[str, Any], str], ...]


def load_golden() -> Golden:
    document = json.loads(FIXTURE.read_text())
    issued_at = datetime.datetime.fromisoformat(document["issuedAt"])
    ca_key = derived_key(document["ca"]["seed"], KeySpec())
    ca_pem = document["ca"]["certificate"].encode()
    ca_key_pem = private_key_to_pem(ca_key)
    ca = load_ca(ca_pem, ca_key_pem, issued_at)
    password = document["keystorePassword"].encode()
    cases = tuple(
        GoldenCase(
            name=case["name"],
            uid=case["uid"],
            spec=case["spec"],
            spec_hash=case["specHash"],
            secret=_rebuilt_secret(case, ca, password),
            status=case["status"],
        )
        for case in document["cases"]
    )
    hash_only = tuple((c["name"], c["spec"], c["specHash"]) for c in document["hashOnly"])
    return Golden(
        document["namespace"], issued_at, ca, ca_key_pem, ca_pem, password, cases, hash_only
    )


def _rebuilt_secret(
    case: dict[str, Any], ca: CertificateAuthority, password: bytes
) -> dict[str, Any]:
    secret: dict[str, Any] = copy.deepcopy(case["secret"])
    data = secret["data"]
    chain_pem = base64.b64decode(data["tls.crt"])
    leaf = load_certificates(chain_pem)[0]
    public = leaf.public_key()
    spec = key_spec_of(public)  # type: ignore[arg-type]
    key = derived_key(case["keySeed"], spec)
    encoding = KeyEncoding.parse(case["keyEncoding"])
    key_pem = private_key_to_pem(key, encoding)
    rebuilt = {
        "tls.key": key_pem,
        "tls-combined.pem": key_pem + chain_pem,
        "key.der": private_key_to_der(key),
        "keystore.p12": pkcs12.serialize_key_and_certificates(
            b"certificate",
            key,
            leaf,
            None,
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .hmac_hash(hashes.SHA256())
            .build(password),
        ),
    }
    for name in case["rebuilt"]:
        data[name] = base64.b64encode(rebuilt[name]).decode()
    return secret
