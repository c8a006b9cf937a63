"""PodCertificateRequests as kubelets post them (for pods of a node that
ask for a pod certificate), a watch that times their answers, and the bare
signer the operator is measured against: one status write each, no crypto."""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mtls_operator.api.paths import core_path
from mtls_operator.api.pod_certificates import pod_certificate_requests_path
from mtls_operator.runtime.kube import Kube

from bench.parallel import in_parallel

SIGNER = "mtls.dev/pod-identity"
PODS = 10


POD_CERTIFICATE_VOLUME = {
    "name": "identity",
    "projected": {
        "sources": [
            {
                "podCertificate": {
                    "signerName": SIGNER,
                    "keyType": "ECDSAP256",
                    "credentialBundlePath": "credentialbundle.pem",
                }
            }
        ]
    },
}


def stub_requests(count: int) -> list[str]:
    """What kubelets send: an empty PKCS#10 request for a fresh key, base64."""
    stubs = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        stubs.append(base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode())
    return stubs


def request_body(pod: dict[str, Any], node: dict[str, Any], stub: str) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "PodCertificateRequest",
        "metadata": {"generateName": "req-"},
        "spec": {
            "signerName": SIGNER,
            "podName": pod["metadata"]["name"],
            "podUID": pod["metadata"]["uid"],
            "serviceAccountName": pod["spec"]["serviceAccountName"],
            "serviceAccountUID": pod["serviceAccountUID"],
            "nodeName": node["metadata"]["name"],
            "nodeUID": node["metadata"]["uid"],
            "maxExpirationSeconds": 86400,
            "stubPKCS10Request": stub,
        },
    }


async def pods_on_a_node(kube: Kube, namespace: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    node = await kube.create(core_path("nodes"), {"metadata": {"name": f"{namespace}-node"}})
    account = await kube.create(
        core_path("serviceaccounts", namespace), {"metadata": {"name": "app"}}
    )
    pods = []
    for index in range(PODS):
        pod = await kube.create(
            core_path("pods", namespace),
            {
                "metadata": {"name": f"app-{index}"},
                "spec": {
                    "nodeName": node["metadata"]["name"],
                    "serviceAccountName": "app",
                    "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
                    # The signer signs only for pods whose own volume asks it to.
                    "volumes": [POD_CERTIFICATE_VOLUME],
                },
            },
        )
        pod["serviceAccountUID"] = account["metadata"]["uid"]
        pods.append(pod)
    return node, pods


async def answered(kube: Kube, namespace: str, count: int, timeout: float = 600.0) -> float:
    """When `count` requests of the namespace have a terminal condition."""
    path = pod_certificate_requests_path(namespace)
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(done) < count and time.monotonic() < deadline:
        items, version = await kube.list(path)
        done |= {i["metadata"]["name"] for i in items if (i.get("status") or {}).get("conditions")}
        if len(done) >= count:
            break
        try:
            async for _, obj in kube.watch(path, version):
                if (obj.get("status") or {}).get("conditions"):
                    done.add(obj["metadata"]["name"])
                if len(done) >= count:
                    break
        except Exception as err:  # reconnect: list again
            print(f"watch of {path} ended ({err}); listing again", flush=True)
    if len(done) < count:
        raise TimeoutError(f"{len(done)} of {count} requests answered")
    return time.monotonic()


async def observed(
    kube: Kube, namespace: str, total: int, post: Callable[[], Awaitable[object]]
) -> float:
    """Seconds from the first post until a watch of the namespace has seen
    `total` requests answered: bare client and operator alike are timed by
    this observer, as kubelets watch their requests."""
    observer = asyncio.create_task(answered(kube, namespace, total))
    started = time.monotonic()
    await post()
    return await observer - started


async def bare_signer(
    kube: Kube,
    namespace: str,
    bodies: list[dict[str, Any]],
    total: int,
) -> float:
    """Post each request, then answer it with one status write (Denied: the
    cheapest valid answer, no crypto), `total` answered in the namespace at
    the end: requests per second."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "status": {
            "conditions": [
                {
                    "type": "Denied",
                    "status": "True",
                    "reason": "Baseline",
                    "message": "baseline",
                    "lastTransitionTime": now,
                }
            ]
        }
    }

    async def post_and_answer(index: int) -> None:
        created = await kube.create(pod_certificate_requests_path(namespace), bodies[index])
        name = created["metadata"]["name"]
        await kube.merge_patch(pod_certificate_requests_path(namespace, name, "status"), status)

    seconds = await observed(
        kube, namespace, total, lambda: in_parallel(len(bodies), post_and_answer)
    )
    return len(bodies) / seconds
