"""Crash safety: SIGKILL the operator in the middle of issuing 200
certificates, start it again, and every certificate ends Ready with a valid
Secret, issued exactly once; certificates that were valid are left alone."""

from __future__ import annotations

import base64
import concurrent.futures
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes import client

from operator_process import OperatorProcess
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    certificate,
    create_certificate,
    plain,
    secret_data,
    wait_for,
)

VALID, BURST = 40, 200


def managed_secrets(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    listed = client.CoreV1Api(api).list_namespaced_secret(
        namespace, label_selector="app.kubernetes.io/managed-by=mtls-operator"
    )
    return {item["metadata"]["name"]: item for item in plain(api, listed)["items"]}


def certificates(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    listed = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "mtls.dev", "v1alpha1", namespace, "mtlscertificates"
    )
    items: list[dict[str, Any]] = listed["items"]  # type: ignore[index]  # typed as object
    return {item["metadata"]["name"]: item for item in items}


def ready_names(api: client.ApiClient, namespace: str) -> set[str]:
    return {
        name
        for name, body in certificates(api, namespace).items()
        if any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (body.get("status") or {}).get("conditions", [])
        )
    }


def test_sigkill_during_a_burst_loses_nothing_and_issues_nothing_twice(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    for index in range(VALID):
        create_certificate(
            kube_api,
            namespace,
            certificate(f"valid-{index}", "client", commonName=f"valid-{index}"),
        )
    wait_for(
        lambda: len(ready_names(kube_api, namespace)) == VALID or None,
        timeout=60,
        what="the valid certificates",
    )
    before = {
        name: secret["metadata"]["annotations"]["mtls.dev/serial"]
        for name, secret in managed_secrets(kube_api, namespace).items()
    }

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        creating = [
            pool.submit(
                create_certificate,
                kube_api,
                namespace,
                certificate(f"burst-{index}", "server", commonName=f"burst-{index}.example"),
            )
            for index in range(BURST)
        ]
        # Kill it once it is busy issuing the burst.
        wait_for(
            lambda: len(managed_secrets(kube_api, namespace)) >= VALID + 20 or None,
            timeout=60,
            interval=0.05,
            what="the burst to start",
        )
        operator.kill()
        for future in creating:
            future.result()
    killed_with = len(managed_secrets(kube_api, namespace)) - VALID
    assert 0 < killed_with < BURST, (
        f"the kill should land mid-burst ({killed_with} of {BURST} issued)"
    )

    operator.start()
    wait_for(
        lambda: len(ready_names(kube_api, namespace)) == VALID + BURST or None,
        timeout=120,
        interval=0.5,
        what="every certificate Ready",
    )

    secrets = managed_secrets(kube_api, namespace)
    bodies = certificates(kube_api, namespace)
    ca = x509.load_pem_x509_certificate(
        secret_data(kube_api, OPERATOR_NAMESPACE, CLUSTER_CA_SECRET)["tls.crt"]
    )
    for name, body in bodies.items():
        secret = secrets[f"{name}-tls"]
        annotations = secret["metadata"]["annotations"]
        status = body["status"]
        assert annotations["mtls.dev/revision"] == "1", f"{name} was issued more than once"
        assert status["revision"] == 1, name
        assert status["serialNumber"] == annotations["mtls.dev/serial"], name
        data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
        leaf = x509.load_pem_x509_certificate(data["tls.crt"])
        leaf.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(data["tls.key"], None)
        assert key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) == leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ), name
    for name, serial in before.items():
        assert secrets[name]["metadata"]["annotations"]["mtls.dev/serial"] == serial, (
            f"{name} was valid and must not be re-issued"
        )
