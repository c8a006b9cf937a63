"""No private key material in the operator's log, in an event, in a status
or in the metrics, and no CA key in a leaf Secret: the test issues keys of
every kind itself, then looks for them, so it holds whatever ran before it.

Key material is looked for in every form it could leak in: PEM lines, the
base64 of a Secret's data, DER as base64 or hex, and the raw private
number of each key: the cluster CA's and every key the test had issued."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from kubernetes import client

from mtls_operator.pki.keys import PrivateKey

from localcluster import Kubectl
from operator_process import OperatorProcess
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    certificate,
    create_certificate,
    plain,
    wait_ready,
)

KINDS: dict[str, dict[str, Any]] = {
    "ecdsa": {"additionalOutputFormats": [{"type": "CombinedPEM"}, {"type": "DER"}]},
    "rsa": {"privateKey": {"algorithm": "RSA", "size": 2048, "encoding": "PKCS1"}},
    "ed25519": {"privateKey": {"algorithm": "Ed25519"}},
    "keystore": {"keystores": {"pkcs12": {"passwordSecretRef": {"name": "leak-password"}}}},
}
PRIVATE_KEY_DATA = ("tls.key", "ca.key", "key.der", "tls-combined.pem")
# A PEM private key block with content (an error message may name the header).
PEM_KEY_BLOCK = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=]{16}")


def load_key(data: bytes) -> PrivateKey | None:
    try:
        if b"PRIVATE KEY-----" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, PrivateKey) else None


def needles(key: PrivateKey) -> Iterator[str]:
    """Distinctive pieces of `key` in every encoding it could leak in."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # The middle of each, past the headers every key of a kind shares.
    yield base64.b64encode(der).decode()[-40:]
    yield der.hex()[-40:]
    yield pem.decode().splitlines()[-2][:40]
    yield base64.b64encode(pem).decode()[-60:-20]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        yield format(key.private_numbers().private_value, "x")[:32]
    elif isinstance(key, rsa.RSAPrivateKey):
        yield format(key.private_numbers().d, "x")[:32]
        traditional = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        yield base64.b64encode(traditional).decode()[-40:]
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        yield raw.hex()
        yield base64.b64encode(raw).decode()[:40]


def namespace_secrets(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = plain(
        api, client.CoreV1Api(api).list_namespaced_secret(namespace)
    )["items"]
    return items


def secret_keys(secret: dict[str, Any]) -> list[PrivateKey]:
    found = []
    for name in PRIVATE_KEY_DATA:
        encoded = (secret.get("data") or {}).get(name)
        if encoded:
            key = load_key(base64.b64decode(encoded))
            if key is not None:
                found.append(key)
    return found


def statuses(kubectl: Kubectl, namespace: str) -> str:
    found = []
    for kind in ("mtlscertificates.mtls.dev", "podcertificaterequests"):
        listed = json.loads(kubectl("get", kind, "-n", namespace, "-o", "json").stdout)
        found += [item.get("status") for item in listed["items"]]
    return json.dumps(found)


def events(kubectl: Kubectl, *namespaces: str) -> str:
    return "".join(kubectl("get", "events", "-n", ns, "-o", "json").stdout for ns in namespaces)


@pytest.fixture
def issued_of_every_kind(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    client.CoreV1Api(kube_api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="leak-password"), string_data={"password": "pw"}
        ),
    )
    for name, spec in KINDS.items():
        create_certificate(
            kube_api,
            namespace,
            certificate(name, "both", dnsNames=[f"{name}.{namespace}.svc"], **spec),
        )
    for name in KINDS:
        wait_ready(kube_api, namespace, name)


def test_no_private_key_material_leaks_anywhere(
    issued_of_every_kind: None,
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    ca_secret = plain(
        kube_api,
        client.CoreV1Api(kube_api).read_namespaced_secret(CLUSTER_CA_SECRET, OPERATOR_NAMESPACE),
    )
    managed = [
        s
        for s in namespace_secrets(kube_api, namespace)
        if (s["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by")
        == "mtls-operator"
    ]
    leaf_keys = [key for s in managed for key in secret_keys(s)]
    ca_keys = secret_keys(ca_secret)
    assert ca_keys, "the cluster CA's key was found"
    assert len(leaf_keys) >= len(KINDS)

    haystacks = {
        "operator log": operator.log(),
        "events": events(kubectl, namespace, OPERATOR_NAMESPACE),
        "statuses": statuses(kubectl, namespace),
        "metrics": operator.metrics(),
    }
    assert haystacks["operator log"], "the operator wrote a log"
    for where, text in haystacks.items():
        assert PEM_KEY_BLOCK.search(text) is None, where
        for key in [*ca_keys, *leaf_keys]:
            for needle in needles(key):
                assert needle not in text, f"key material in {where}"

    # No leaf Secret holds the CA's key, in any encoding.
    ca_needles = [needle for key in ca_keys for needle in needles(key)]
    for secret in managed:
        assert "ca.key" not in (secret.get("data") or {}), secret["metadata"]["name"]
        decoded = "".join(
            base64.b64decode(v).decode(errors="replace") + base64.b64decode(v).hex() + v
            for v in (secret.get("data") or {}).values()
        )
        for needle in ca_needles:
            assert needle not in decoded, f"the CA key in {secret['metadata']['name']}"
