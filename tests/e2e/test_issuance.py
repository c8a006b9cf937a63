"""MtlsCertificate in, a ready-to-mount Secret out: every usage and key
algorithm, checked with openssl, pkilint and real mTLS handshakes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from kubernetes import client

from operator_process import OperatorProcess
from recipe_checks import mtls_handshake, openssl, openssl_purposes, openssl_verify, pkilint
from support.cluster import (
    certificate,
    create_certificate,
    get_secret,
    mount,
    secret_data,
    wait_ready,
)

USAGES = ("server", "client", "both")
KEYS = {
    "ecdsa": {"algorithm": "ECDSA"},
    "rsa": {"algorithm": "RSA", "size": 2048},
    "ed25519": {"algorithm": "Ed25519"},
}


def test_every_usage_and_key_algorithm(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    for usage, (key_name, key) in itertools.product(USAGES, KEYS.items()):
        name = f"{usage}-{key_name}"
        create_certificate(
            kube_api,
            namespace,
            certificate(
                name,
                usage,
                commonName=f"{name}.{namespace}.svc",
                dnsNames=[f"{name}.{namespace}.svc.cluster.local"],
                ipAddresses=["127.0.0.1"],
                uris=[f"https://{name}.example.com/id"],
                privateKey=key,
            ),
        )
    mounts: dict[str, Path] = {}
    for usage, key_name in itertools.product(USAGES, KEYS):
        name = f"{usage}-{key_name}"
        ready = wait_ready(kube_api, namespace, name)
        secret = get_secret(kube_api, namespace, f"{name}-tls")
        assert secret is not None
        assert secret["type"] == "kubernetes.io/tls"
        assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mtls-operator"
        data = secret_data(kube_api, namespace, f"{name}-tls")
        assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
        directory = mounts[name] = mount(data, tmp_path / name)

        verified = openssl_verify(directory / "ca.crt", directory / "tls.crt")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        purposes = openssl_purposes(directory / "tls.crt")
        assert purposes["SSL server"] is (usage != "client"), name
        assert purposes["SSL client"] is (usage != "server"), name
        assert pkilint(directory / "tls.crt") == [], name
        assert ready["status"]["revision"] == 1
        assert ready["status"]["serialNumber"]
        assert ready["status"]["issuer"] == "CN=mtls-operator cluster CA"

    for key_name in KEYS:
        server, client_dir = mounts[f"server-{key_name}"], mounts[f"client-{key_name}"]
        handshake = mtls_handshake(
            server_cert=server / "tls.crt",
            server_key=server / "tls.key",
            server_trusts=server / "ca.crt",
            client_cert=client_dir / "tls.crt",
            client_key=client_dir / "tls.key",
            client_trusts=client_dir / "ca.crt",
            hostname=f"server-{key_name}.{namespace}.svc",
        )
        assert handshake.succeeded, handshake.server_output + handshake.client_output
    both = mounts["both-ecdsa"]
    handshake = mtls_handshake(
        server_cert=both / "tls.crt",
        server_key=both / "tls.key",
        server_trusts=both / "ca.crt",
        client_cert=both / "tls.crt",
        client_key=both / "tls.key",
        client_trusts=both / "ca.crt",
        hostname=f"both-ecdsa.{namespace}.svc",
    )
    assert handshake.succeeded, handshake.server_output + handshake.client_output


@pytest.mark.parametrize(
    ("key", "header"),
    [
        ({"algorithm": "RSA", "encoding": "PKCS1"}, b"-----BEGIN RSA PRIVATE KEY-----"),
        (
            {"algorithm": "ECDSA", "size": 384, "encoding": "PKCS1"},
            b"-----BEGIN EC PRIVATE KEY-----",
        ),
        ({"algorithm": "ECDSA", "size": 521}, b"-----BEGIN PRIVATE KEY-----"),
    ],
)
def test_key_encodings(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    namespace: str,
    key: dict[str, object],
    header: bytes,
) -> None:
    create_certificate(
        kube_api, namespace, certificate("enc", "client", commonName="enc", privateKey=key)
    )
    wait_ready(kube_api, namespace, "enc")
    assert secret_data(kube_api, namespace, "enc-tls")["tls.key"].startswith(header)


def test_additional_formats_and_keystores(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    client.CoreV1Api(kube_api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="p12-pass"), string_data={"password": "changeit\n"}
        ),
    )
    create_certificate(
        kube_api,
        namespace,
        certificate(
            "java",
            "both",
            commonName="java.shop.example",
            additionalOutputFormats=[{"type": "CombinedPEM"}, {"type": "DER"}],
            keystores={"pkcs12": {"passwordSecretRef": {"name": "p12-pass", "key": "password"}}},
            secretTemplate={
                "labels": {"team": "payments"},
                "annotations": {"reloader.example/match": "true"},
            },
        ),
    )
    wait_ready(kube_api, namespace, "java")
    data = secret_data(kube_api, namespace, "java-tls")
    assert set(data) == {
        "tls.crt",
        "tls.key",
        "ca.crt",
        "tls-combined.pem",
        "key.der",
        "keystore.p12",
        "truststore.p12",
    }
    assert data["tls-combined.pem"] == data["tls.key"] + data["tls.crt"]
    files = mount(data, tmp_path / "java")
    keystore = openssl(
        "pkcs12", "-in", str(files / "keystore.p12"), "-passin", "pass:changeit", "-nodes"
    )
    assert "BEGIN PRIVATE KEY" in keystore.stdout
    # The identity policy writes the namespace as the Organization.
    assert f"subject=O = {namespace}, CN = java.shop.example" in keystore.stdout
    truststore = openssl(
        "pkcs12", "-in", str(files / "truststore.p12"), "-passin", "pass:changeit", "-nokeys"
    )
    assert "subject=CN = mtls-operator cluster CA" in truststore.stdout
    assert (
        openssl("pkey", "-inform", "DER", "-in", str(files / "key.der"), "-noout").returncode == 0
    )
    secret = get_secret(kube_api, namespace, "java-tls")
    assert secret is not None
    assert secret["metadata"]["labels"]["team"] == "payments"
    assert secret["metadata"]["annotations"]["reloader.example/match"] == "true"
