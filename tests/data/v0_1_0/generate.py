"""Writes `secrets.json`: MtlsCertificates, and the Secrets and statuses that
mtls-operator 0.1.0 wrote for them, as committed test data for upgrades.

It runs against the 0.1.0 package (commit 8713689), not the current one:

    git worktree add /tmp/v0.1.0 8713689
    cd /tmp/v0.1.0 && PYTHONPATH=operator python /path/to/generate.py OUT.json

Private keys are never committed: every key is derived from a seed named in
the file (`tls.key` and the other data that embed the key are rebuilt by the
tests from it), and the CA key likewise.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from mtls_operator import issuance, pki
from mtls_operator.ca_secrets import ca_from_secret_data
from mtls_operator.pki import KeyAlgorithm, KeySpec, create_root_ca
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import private_key_to_pem
from mtls_operator.policy import renewal_time
from mtls_operator.resources import CertificateRef
from mtls_operator.secrets import issuance_record, issued_leaf_facts, new_secret
from mtls_operator.spec import parse_spec
from mtls_operator.status import ISSUED, ready_status

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
NAMESPACE = "golden"
CA_SEED = "mtls-operator 0.1.0 golden CA"
_CURVES = {256: ec.SECP256R1, 384: ec.SECP384R1, 521: ec.SECP521R1}
# Key data the tests rebuild from the seed, never stored.
KEY_BEARING = ("tls.key", "tls-combined.pem", "key.der", "keystore.p12")


def derived_key(seed: str, spec: KeySpec) -> pki.PrivateKey:
    digest = hashlib.sha512(seed.encode()).digest()
    if spec.algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.from_private_bytes(digest[:32])
    if spec.algorithm is KeyAlgorithm.ECDSA and spec.size is not None:
        curve = _CURVES[spec.size]()
        order_bits = {256: 256, 384: 384, 521: 521}[spec.size]
        return ec.derive_private_key(int.from_bytes(digest, "big") % (2 ** (order_bits - 1)), curve)
    raise ValueError(f"no derivation for {spec}")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# (name, spec): what users write, from the minimal form to every field.
SPECS: list[tuple[str, dict[str, Any]]] = [
    (
        "minimal-server",
        {"secretName": "minimal-server-tls", "usage": "server", "dnsNames": ["minimal.golden.svc"]},
    ),
    (
        "common-name-only",
        {"secretName": "common-name-only-tls", "usage": "client", "commonName": "billing-client"},
    ),
    (
        "both-usages",
        {
            "secretName": "both-usages-tls",
            "usage": "both",
            "commonName": "api.golden.svc",
            "dnsNames": ["api.golden.svc", "api.golden.svc.cluster.local"],
        },
    ),
    (
        "uppercase-and-duplicates",
        {
            "secretName": "uppercase-tls",
            "usage": "server",
            "dnsNames": ["B.golden.svc", "a.golden.svc", "b.golden.svc"],
        },
    ),
    (
        "every-san",
        {
            "secretName": "every-san-tls",
            "usage": "server",
            "commonName": "web.golden.svc",
            "dnsNames": ["web.golden.svc", "*.web.golden.svc"],
            "ipAddresses": ["10.0.0.12", "fd00::12"],
            "uris": ["spiffe://cluster.local/ns/golden/sa/web"],
            "emailAddresses": ["ops@example.com"],
        },
    ),
    (
        "subject-fields",
        {
            "secretName": "subject-fields-tls",
            "usage": "client",
            "commonName": "reporting",
            "subject": {
                "organizations": ["Golden Corp"],
                "organizationalUnits": ["Platform"],
                "countries": ["de"],
                "provinces": ["Berlin"],
                "localities": ["Berlin"],
            },
        },
    ),
    (
        "durations",
        {
            "secretName": "durations-tls",
            "usage": "server",
            "dnsNames": ["durations.golden.svc"],
            "duration": "720h",
            "renewBefore": "240h",
        },
    ),
    (
        "percentage",
        {
            "secretName": "percentage-tls",
            "usage": "server",
            "dnsNames": ["percentage.golden.svc"],
            "duration": "90m",
            "renewBeforePercentage": 25,
        },
    ),
    (
        "ecdsa-384-pkcs1",
        {
            "secretName": "ecdsa-384-tls",
            "usage": "server",
            "dnsNames": ["p384.golden.svc"],
            "privateKey": {"algorithm": "ECDSA", "size": 384, "encoding": "PKCS1"},
        },
    ),
    (
        "ecdsa-521",
        {
            "secretName": "ecdsa-521-tls",
            "usage": "client",
            "commonName": "p521",
            "privateKey": {"algorithm": "ecdsa", "size": 521},
        },
    ),
    (
        "ed25519-never",
        {
            "secretName": "ed25519-tls",
            "usage": "both",
            "dnsNames": ["ed.golden.svc"],
            "privateKey": {"algorithm": "Ed25519", "rotationPolicy": "Never"},
        },
    ),
    (
        "template-and-retain",
        {
            "secretName": "template-tls",
            "usage": "server",
            "dnsNames": ["template.golden.svc"],
            "secretTemplate": {
                "labels": {"team": "golden"},
                "annotations": {"reloader/watch": "true"},
            },
            "secretDeletionPolicy": "Retain",
        },
    ),
    (
        "output-formats",
        {
            "secretName": "outputs-tls",
            "usage": "server",
            "dnsNames": ["outputs.golden.svc"],
            "additionalOutputFormats": [{"type": "CombinedPEM"}, {"type": "DER"}],
        },
    ),
    (
        "keystores",
        {
            "secretName": "keystores-tls",
            "usage": "client",
            "commonName": "java-client",
            "keystores": {"pkcs12": {"passwordSecretRef": {"name": "p12-pass"}}},
        },
    ),
    (
        "namespace-ca",
        {
            "secretName": "namespace-ca-tls",
            "usage": "server",
            "dnsNames": ["own.golden.svc"],
            "caSecretName": "golden-ca",
        },
    ),
]

# Specs whose hash is pinned but that have no Secret fixture (RSA keys
# cannot be derived from a seed cheaply).
HASH_ONLY: list[tuple[str, dict[str, Any]]] = [
    (
        f"rsa-{size}",
        {
            "secretName": f"rsa-{size}-tls",
            "usage": "server",
            "dnsNames": [f"rsa{size}.golden.svc"],
            "privateKey": {"algorithm": "RSA", "size": size},
        },
    )
    for size in (2048, 3072, 4096)
] + [
    (
        "rsa-default-pkcs1",
        {
            "secretName": "rsa-pkcs1-tls",
            "usage": "client",
            "commonName": "rsa",
            "privateKey": {"algorithm": "RSA", "encoding": "PKCS1"},
        },
    ),
]


def main(out: Path) -> None:
    ca_key = derived_key(CA_SEED, KeySpec())
    ca_pem = certificates_to_pem([create_root_ca(ca_key, "Golden Root CA", NOW)])
    ca = ca_from_secret_data(
        {"tls.crt": ca_pem, "tls.key": private_key_to_pem(ca_key), "ca.crt": ca_pem}, NOW
    )
    password = b"golden-password"
    cases = []
    for index, (name, spec_body) in enumerate(SPECS):
        uid = f"00000000-0000-4000-8000-{index:012d}"
        spec = parse_spec(spec_body, datetime.timedelta(hours=1))
        seed = f"mtls-operator 0.1.0 golden leaf {name}"
        key = derived_key(seed, spec.private_key.key)
        original = KeySpec.generate
        KeySpec.generate = lambda self, key=key: key  # type: ignore[method-assign]
        try:
            content = issuance.issue_secret_content(
                spec, ca, NOW, pkcs12_password=password if spec.pkcs12_password else None
            )
        finally:
            KeySpec.generate = original  # type: ignore[method-assign]
        ref = CertificateRef(NAMESPACE, name, uid)
        record = issuance_record(spec, content.issued, ca, issued_at=NOW, revision=1)
        secret = new_secret(ref, spec, content.data, record)
        secret["metadata"]["uid"] = f"secret-{uid}"
        secret["metadata"]["resourceVersion"] = str(1000 + index)
        for data_key in KEY_BEARING:
            secret["data"].pop(data_key, None)
        leaf = issued_leaf_facts(content.issued.certificate, ca.subject, ca.key_identifier)
        renewal = renewal_time(spec, NOW, leaf.not_after, uid, ca.not_after)
        status = ready_status(
            {},
            generation=1,
            reason=ISSUED,
            message=f"certificate {leaf.serial_number} issued by {ca.subject!r}",
            leaf=leaf,
            renewal=renewal,
            issuer=ca.subject,
            revision=1,
            now=NOW,
        )
        cases.append(
            {
                "name": name,
                "uid": uid,
                "spec": spec_body,
                "specHash": spec.issuance_hash(),
                "keySeed": seed,
                "keyEncoding": spec.private_key.encoding.value,
                "rebuilt": sorted(k for k in KEY_BEARING if k in content.data),
                "secret": secret,
                "status": status,
            }
        )
    hash_only = [
        {
            "name": name,
            "spec": body,
            "specHash": parse_spec(body, datetime.timedelta(hours=1)).issuance_hash(),
        }
        for name, body in HASH_ONLY
    ]
    document = {
        "version": "0.1.0",
        "issuedAt": NOW.isoformat(),
        "namespace": NAMESPACE,
        "ca": {"seed": CA_SEED, "certificate": ca_pem.decode()},
        "keystorePassword": password.decode(),
        "cases": cases,
        "hashOnly": hash_only,
    }
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
