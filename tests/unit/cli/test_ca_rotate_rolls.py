"""What `ca rotate` waits for between steps: the workloads that follow reloads and mount
a certificate of the CA, until the operator rolled each for what it mounts now."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from typing import Any

import pytest

from mtls_operator.api.managed_secret import MANAGED_BY_LABEL, MANAGER, read_secret
from mtls_operator.api.paths import secrets_path
from mtls_operator.api.resources import certificates_path
from mtls_operator.api.trust_bundles import BUNDLE_KEY, CONFIGMAP_NAME, configmaps_path
from mtls_operator.api.workloads import MOUNTED_DIGEST_ANNOTATION, WorkloadKind, workloads_path
from mtls_operator.cli.ca_rotate import _pending_rolls
from mtls_operator.pki import CertificateAuthority
from mtls_operator.policy.rollout import Mounted, digest

from support.fake_api import FakeKube
from support.objects import certificate_spec, secret_body
from support.workloads import rolled_out, workload_body

NAMESPACE = "shop"
CA_SECRET = "shop-ca"
BUNDLE = "-----BEGIN CERTIFICATE-----\nMII...\n-----END CERTIFICATE-----\n"


def scene(ca: CertificateAuthority, *, recorded: str | None) -> FakeKube:
    """web-tls, signed by the namespace's CA, api-tls, signed by the cluster CA, and the
    cluster's trust bundle, all mounted by the Deployment web, which records `recorded`
    ("current": what they hold now)."""
    kube = FakeKube()
    secrets = {}
    for name, ca_secret in (("web", CA_SECRET), ("api", None)):
        spec = {"secretName": f"{name}-tls", "usage": "server", "caSecretName": ca_secret}
        kube.put(
            certificates_path(NAMESPACE, name),
            {"metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec},
        )
        secret = secret_body(certificate_spec(secretName=f"{name}-tls"), ca)
        secret["metadata"]["namespace"] = NAMESPACE
        secrets[f"{name}-tls"] = read_secret(
            kube.put(secrets_path(NAMESPACE, f"{name}-tls"), secret)
        )
    labels = {MANAGED_BY_LABEL: MANAGER}
    configmap = {
        "metadata": {"name": CONFIGMAP_NAME, "namespace": NAMESPACE, "labels": labels},
        "data": {BUNDLE_KEY: BUNDLE},
    }
    kube.put(f"{configmaps_path(NAMESPACE)}/{CONFIGMAP_NAME}", configmap)
    mounted = [Mounted.trust_bundle(CONFIGMAP_NAME, hashlib.sha256(BUNDLE.encode()).hexdigest())]
    for name, facts in secrets.items():
        assert facts.leaf is not None
        mounted.append(
            Mounted.secret(name, facts.leaf.serial_number, facts.trust_bundle_sha256 or "")
        )
    current = digest(mounted)
    body: dict[str, Any] = rolled_out(
        workload_body(
            "web", namespace=NAMESPACE, secrets=list(secrets), config_maps=[CONFIGMAP_NAME]
        )
    )
    digests = {"current": current, "stale": "0" * len(current)}
    if recorded is not None:
        body["metadata"]["annotations"][MOUNTED_DIGEST_ANNOTATION] = digests[recorded]
    kube.put(workloads_path(WorkloadKind.DEPLOYMENT, NAMESPACE, "web"), body)
    return kube


@pytest.mark.parametrize(
    ("recorded", "pending"),
    [
        pytest.param("current", [], id="rolled for the Secrets and the bundle it mounts"),
        pytest.param("stale", [f"Deployment {NAMESPACE}/web"], id="not rolled yet"),
        pytest.param(None, [], id="never recorded: nothing to wait for"),
    ],
)
def test_a_namespace_ca_rotation_waits_for_the_rolls_of_its_workloads(
    ecdsa_ca: CertificateAuthority, recorded: str | None, pending: list[str]
) -> None:
    kube = scene(ecdsa_ca, recorded=recorded)
    args = argparse.Namespace(cluster_ca=False, secret=CA_SECRET)
    assert asyncio.run(_pending_rolls(kube, args, NAMESPACE)) == pending


def test_workloads_of_another_ca_are_not_waited_for(ecdsa_ca: CertificateAuthority) -> None:
    kube = scene(ecdsa_ca, recorded="stale")
    args = argparse.Namespace(cluster_ca=False, secret="other-ca")
    assert asyncio.run(_pending_rolls(kube, args, NAMESPACE)) == []
