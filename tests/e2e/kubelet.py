"""The kubelet's part in pod certificates, played through the API (there is
no kubelet here): a Node, a Pod bound to it that mounts a `podCertificate`
volume, and PodCertificateRequests posted the way the kubelet posts them, as
the node's own identity (system:node:<name>, group system:nodes), so that the
API server's Node authorizer and NodeRestriction check them as they would a
real kubelet's."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from localcluster import Kubectl
from support.cluster import wait_for

SIGNER = "mtls.dev/pod-identity"
PCR_API = "certificates.k8s.io/v1"
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
# The kubelet's key types and how it makes each key.
KEY_TYPES: dict[str, Callable[[], PrivateKey]] = {
    "ECDSAP256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ECDSAP384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ED25519": ed25519.Ed25519PrivateKey.generate,
    "RSA3072": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
}


def stub_request(key: PrivateKey) -> bytes:
    """What the kubelet sends: a PKCS#10 request with an empty template."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def uid_of(kubectl: Kubectl, *args: str) -> str:
    return str(json.loads(kubectl("get", *args, "-o", "json").stdout)["metadata"]["uid"])


@dataclass(frozen=True)
class PodIdentity:
    namespace: str
    pod: str
    pod_uid: str
    service_account: str
    service_account_uid: str


class FakeKubelet:
    def __init__(self, kubectl: Kubectl, node: str) -> None:
        self.kubectl = kubectl
        self.node = node
        kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}),
        )
        self.node_uid = uid_of(kubectl, "node", node)

    def as_node(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            f"--as=system:node:{self.node}", "--as-group=system:nodes", *args, **kwargs
        )

    def run_pod(
        self,
        namespace: str,
        name: str,
        service_account: str,
        *,
        user_annotations: dict[str, str] | None = None,
        signer: str = SIGNER,
    ) -> PodIdentity:
        """A pod bound to this node that mounts a podCertificate volume of
        `signer` (ours unless told)."""
        self.kubectl("create", "serviceaccount", service_account, "-n", namespace, check=False)
        source: dict[str, Any] = {
            "signerName": signer,
            "keyType": "ECDSAP256",
            "credentialBundlePath": "credentialbundle.pem",
        }
        if user_annotations:
            source["userAnnotations"] = user_annotations
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "nodeName": self.node,
                "serviceAccountName": service_account,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                "volumes": [
                    {"name": "identity", "projected": {"sources": [{"podCertificate": source}]}}
                ],
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(pod))
        return PodIdentity(
            namespace,
            name,
            uid_of(self.kubectl, "pod", name, "-n", namespace),
            service_account,
            uid_of(self.kubectl, "serviceaccount", service_account, "-n", namespace),
        )

    def request_body(
        self,
        pod: PodIdentity,
        key: PrivateKey,
        *,
        max_expiration_seconds: int = 86400,
        signer: str = SIGNER,
        user_annotations: dict[str, str] | None = None,
        **overrides: str,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "signerName": signer,
            "podName": pod.pod,
            "podUID": pod.pod_uid,
            "serviceAccountName": pod.service_account,
            "serviceAccountUID": pod.service_account_uid,
            "nodeName": self.node,
            "nodeUID": self.node_uid,
            "maxExpirationSeconds": max_expiration_seconds,
            "stubPKCS10Request": base64.b64encode(stub_request(key)).decode(),
            **overrides,
        }
        if user_annotations:
            spec["unverifiedUserAnnotations"] = user_annotations
        return {
            "apiVersion": PCR_API,
            "kind": "PodCertificateRequest",
            "metadata": {"generateName": "req-", "namespace": pod.namespace},
            "spec": spec,
        }

    def request(self, pod: PodIdentity, key: PrivateKey, **options: Any) -> str:
        """Post a request as the node; its name."""
        created = self.as_node(
            "create",
            "-o",
            "json",
            "-f",
            "-",
            input=json.dumps(self.request_body(pod, key, **options)),
        )
        return str(json.loads(created.stdout)["metadata"]["name"])

    def wait_for_outcome(self, namespace: str, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """The request's status once it is Issued, Denied or Failed."""

        def outcome() -> dict[str, Any] | None:
            body = json.loads(
                self.kubectl(
                    "get", "podcertificaterequest", name, "-n", namespace, "-o", "json"
                ).stdout
            )
            status: dict[str, Any] = body.get("status") or {}
            return status if status.get("conditions") else None

        return wait_for(
            outcome, timeout=timeout, interval=0.05, what=f"{namespace}/{name} answered"
        )


def condition_of(status: dict[str, Any]) -> tuple[str, str, str]:
    [only] = status["conditions"]
    return only["type"], only["reason"], only.get("message", "")
