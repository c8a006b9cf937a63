"""An upgrade from 0.1.0, as users do it: the 0.1.0 operator, run from git
history, issues 100 certificates of every kind; it stops, and this version
starts on the same cluster. Nothing is re-issued and no Secret is written."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from operator_process import OperatorProcess
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    certificate,
    condition,
    create_certificate,
    plain,
    wait_for,
)
from support.paths import REPO_ROOT
from support.scrape import total

RELEASE_0_1_0 = "8713689"
COUNT = 100
MANAGED = "app.kubernetes.io/managed-by=mtls-operator"
READY_GAUGE = "mtls_operator_certificate_ready"


@pytest.fixture(scope="module")
def release_0_1_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator package of 0.1.0, exported from git history."""
    present = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "cat-file", "-e", f"{RELEASE_0_1_0}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if present.returncode != 0:
        pytest.skip(f"this checkout has no history back to 0.1.0 ({RELEASE_0_1_0})")
    target = tmp_path_factory.mktemp("release-0.1.0")
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", RELEASE_0_1_0, "operator"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "operator"


class OldOperator(OperatorProcess):
    """0.1.0's `mtls-operator run`, its package first on the path."""

    def __init__(self, package_root: Path, *args: Any) -> None:
        super().__init__(*args)
        self._package_root = package_root

    def command(self) -> list[str]:
        return [sys.executable, "-m", "mtls_operator", "run"]

    def environment(self) -> dict[str, str]:
        return {**super().environment(), "PYTHONPATH": str(self._package_root)}


def specs(namespace: str) -> Iterator[dict[str, Any]]:
    """COUNT certificates across the fields 0.1.0 knew."""
    kinds: list[dict[str, Any]] = [
        {},
        {"usage": "client", "dnsNames": None, "commonName": "client"},
        {"usage": "both", "privateKey": {"algorithm": "RSA", "size": 2048, "encoding": "PKCS1"}},
        {"privateKey": {"algorithm": "Ed25519", "rotationPolicy": "Never"}},
        {"duration": "720h", "renewBefore": "240h"},
        {"renewBeforePercentage": 25},
        {"secretTemplate": {"labels": {"team": "shop"}, "annotations": {"example.com/o": "a"}}},
        {"secretDeletionPolicy": "Retain"},
        {"additionalOutputFormats": [{"type": "CombinedPEM"}, {"type": "DER"}]},
        {"keystores": {"pkcs12": {"passwordSecretRef": {"name": "p12-password"}}}},
    ]
    for index in range(COUNT):
        name = f"c{index}"
        body = certificate(name, "server", dnsNames=[f"{name}.{namespace}.svc"])
        for key, value in kinds[index % len(kinds)].items():
            if value is None:
                body["spec"].pop(key, None)
            else:
                body["spec"][key] = value
        yield body


def all_ready(api: client.ApiClient, namespace: str) -> bool:
    listed: Any = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "mtls.dev", "v1alpha1", namespace, "mtlscertificates"
    )
    ready = [
        item
        for item in listed["items"]
        if (found := condition(item)) is not None and found["status"] == "True"
    ]
    return len(ready) == COUNT


def managed_secrets(api: client.ApiClient, namespace: str) -> dict[str, tuple[str, str]]:
    """Each managed Secret's resourceVersion and serial."""
    listed = plain(
        api, client.CoreV1Api(api).list_namespaced_secret(namespace, label_selector=MANAGED)
    )
    return {
        s["metadata"]["name"]: (
            s["metadata"]["resourceVersion"],
            s["metadata"]["annotations"]["mtls.dev/serial"],
        )
        for s in listed["items"]
    }


def test_upgrading_from_0_1_0_re_issues_nothing_and_writes_no_secret(
    release_0_1_0: Path,
    operator_process: OperatorProcess,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    operator_process.stop()  # only 0.1.0, then only this version
    client.CoreV1Api(kube_api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="p12-password"), string_data={"password": "changeit"}
        ),
    )
    old = OldOperator(
        release_0_1_0,
        operator_process.kubeconfig,
        tmp_path / "operator-0.1.0.log",
        [
            "--namespace",
            namespace,
            "--cluster-ca-secret",
            f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
            "--no-leader-election",
        ],
    )
    old.start()
    try:
        for body in specs(namespace):
            create_certificate(kube_api, namespace, body)
        wait_for(lambda: all_ready(kube_api, namespace), timeout=120, what="0.1.0 to issue all")
    finally:
        old.stop()
    before = managed_secrets(kube_api, namespace)
    assert len(before) == COUNT

    operator_process.start()
    started = time.monotonic()
    # Every certificate looked at by this version: each is exported as Ready.
    wait_for(
        lambda: total(operator_process.metrics(), READY_GAUGE, namespace=namespace) == COUNT,
        timeout=60,
        what="this version to look at every certificate",
    )
    time.sleep(3)  # anything it would write, it would have written by now
    after = managed_secrets(kube_api, namespace)
    print(f"upgraded: {COUNT} certificates looked at in {time.monotonic() - started:.1f} s")
    assert after == before, "no Secret written, nothing re-issued"
    assert all_ready(kube_api, namespace)
