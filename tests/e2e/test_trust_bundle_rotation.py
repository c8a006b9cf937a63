"""A rotation of the cluster CA, in the three steps of docs/ca-rotation.md,
while the published trust bundles are sampled throughout: at every moment
the ClusterTrustBundles and the namespace's ConfigMap hold the root of every
live certificate (MtlsCertificate Secrets and a pod certificate)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from e2e.kubelet import FakeKubelet, condition_of
from localcluster import Kubectl
from operator_process import OperatorProcess
from support.authorities import root_from_ca_init
from support.cluster import (
    TRUST_BUNDLE_LABEL,
    b64,
    certificate,
    create_certificate,
    get_secret,
    wait_for,
    wait_ready,
)

BUNDLES = ("mtls.dev:cluster-ca:roots", "mtls.dev:pod-identity:roots")


def fingerprints(pem: bytes) -> set[bytes]:
    return {c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(pem)}


def key_id(certificate: x509.Certificate, kind: type[Any]) -> bytes:
    value: Any = certificate.extensions.get_extension_for_class(kind).value
    return bytes(value.key_identifier if kind is x509.AuthorityKeyIdentifier else value.digest)


class Sampler(threading.Thread):
    """Reads the live leaves and the published bundles again and again, and
    notes every moment a leaf's root is missing from a bundle."""

    def __init__(
        self, api: client.ApiClient, namespace: str, roots: list[x509.Certificate]
    ) -> None:
        super().__init__(daemon=True)
        self.api, self.namespace, self.roots = api, namespace, roots
        self.pod_chain: bytes | None = None
        self.samples = 0
        self.missing: list[str] = []
        self.stop = threading.Event()

    def leaves(self) -> list[tuple[str, x509.Certificate]]:
        found = []
        for name in ("svc-tls", "cli-tls"):
            secret = get_secret(self.api, self.namespace, name)
            if secret is not None:
                pem = base64.b64decode(secret["data"]["tls.crt"])
                found.append((name, x509.load_pem_x509_certificates(pem)[0]))
        if self.pod_chain is not None:
            found.append(("pod", x509.load_pem_x509_certificates(self.pod_chain)[0]))
        return found

    def published(self) -> dict[str, set[bytes]]:
        custom: Any = client.CustomObjectsApi(self.api)
        bundles = {
            name: fingerprints(
                custom.get_cluster_custom_object(
                    "certificates.k8s.io", "v1", "clustertrustbundles", name
                )["spec"]["trustBundle"].encode()
            )
            for name in BUNDLES
        }
        configmap = client.CoreV1Api(self.api).read_namespaced_config_map(
            "mtls-ca-bundle", self.namespace
        )
        bundles["ConfigMap"] = fingerprints((configmap.data or {})["ca.crt"].encode())
        return bundles

    def run(self) -> None:
        while not self.stop.is_set():
            leaves, published = self.leaves(), self.published()
            for name, leaf in leaves:
                [root] = [
                    r
                    for r in self.roots
                    if key_id(r, x509.SubjectKeyIdentifier)
                    == key_id(leaf, x509.AuthorityKeyIdentifier)
                ]
                for where, held in published.items():
                    if root.fingerprint(hashes.SHA256()) not in held:
                        self.missing.append(f"{name}'s root not in {where}")
            self.samples += 1
            time.sleep(0.05)


@pytest.fixture
def rotation_operator(
    operator_process: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator whose cluster CA is the test's own (the session one is
    stopped meanwhile: the ClusterTrustBundles are cluster-wide)."""
    operator_process.stop()
    process = OperatorProcess(
        operator_process.kubeconfig,
        tmp_path / "operator.log",
        [
            "--all-namespaces",
            "--cluster-ca-secret",
            f"{namespace}/rotating-ca",
            "--trust-bundle-namespace-selector",
            f"{TRUST_BUNDLE_LABEL}=true",
            "--no-leader-election",
        ],
    )
    yield process
    process.stop()


def test_every_live_root_stays_published_through_a_rotation(
    rotation_operator: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    old_cert, old_key = root_from_ca_init(tmp_path / "old", "Cluster CA")
    new_cert, new_key = root_from_ca_init(tmp_path / "new", "Cluster CA")
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="rotating-ca"),
            type="kubernetes.io/tls",
            data={"tls.crt": b64(old_cert), "tls.key": b64(old_key), "ca.crt": b64(old_cert)},
        ),
    )
    kubectl("label", "namespace", namespace, f"{TRUST_BUNDLE_LABEL}=true")
    rotation_operator.start()
    create_certificate(
        kube_api, namespace, certificate("svc", "server", dnsNames=[f"svc.{namespace}.svc"])
    )
    create_certificate(kube_api, namespace, certificate("cli", "client", commonName="cli"))
    for name in ("svc", "cli"):
        wait_ready(kube_api, namespace, name)
    kubelet = FakeKubelet(kubectl, f"node-{namespace[-6:]}")
    pod = kubelet.run_pod(namespace, "app", "app")
    roots = [x509.load_pem_x509_certificate(old_cert), x509.load_pem_x509_certificate(new_cert)]
    sampler = Sampler(kube_api, namespace, roots)
    wait_for(
        lambda: all(fingerprints(old_cert) <= s for s in sampler.published().values()),
        what="the old root published",
    )

    def request_pod_certificate() -> None:
        status = kubelet.wait_for_outcome(
            namespace, kubelet.request(pod, ec.generate_private_key(ec.SECP256R1()))
        )
        assert condition_of(status)[0] == "Issued", status
        sampler.pod_chain = status["certificateChain"].encode()

    def leaves_issued_by(root: bytes) -> bool | None:
        wanted = key_id(x509.load_pem_x509_certificate(root), x509.SubjectKeyIdentifier)
        return (
            all(key_id(leaf, x509.AuthorityKeyIdentifier) == wanted for _, leaf in sampler.leaves())
            or None
        )

    def everywhere(bundle: bytes) -> bool | None:
        wanted = fingerprints(bundle)
        secrets = [get_secret(kube_api, namespace, n) for n in ("svc-tls", "cli-tls")]
        in_secrets = all(
            s and fingerprints(base64.b64decode(s["data"]["ca.crt"])) == wanted for s in secrets
        )
        return (in_secrets and all(held == wanted for held in sampler.published().values())) or None

    request_pod_certificate()
    sampler.start()
    try:
        # 1) Trust the new root too.
        core.patch_namespaced_secret(
            "rotating-ca", namespace, {"data": {"ca.crt": b64(old_cert + new_cert)}}
        )
        wait_for(lambda: everywhere(old_cert + new_cert), timeout=20, what="both roots everywhere")
        time.sleep(1)
        # 2) Sign with the new CA: every leaf is re-issued, and pods get new ones.
        core.patch_namespaced_secret(
            "rotating-ca", namespace, {"data": {"tls.crt": b64(new_cert), "tls.key": b64(new_key)}}
        )
        request_pod_certificate()
        wait_for(lambda: leaves_issued_by(new_cert), timeout=20, what="every leaf re-issued")
        time.sleep(1)
        # 3) Drop the old root.
        core.patch_namespaced_secret("rotating-ca", namespace, {"data": {"ca.crt": b64(new_cert)}})
        wait_for(lambda: everywhere(new_cert), timeout=20, what="only the new root everywhere")
        time.sleep(1)
    finally:
        sampler.stop.set()
        sampler.join(timeout=10)
    print(f"{sampler.samples} samples of the published bundles, {len(sampler.missing)} gaps")
    assert sampler.samples > 20
    assert sampler.missing == []
    assert (
        json.loads(kubectl("get", "clustertrustbundle", BUNDLES[1], "-o", "json").stdout)[
            "metadata"
        ]["labels"]["mtls.dev/trust-bundle"]
        == "roots"
    )
