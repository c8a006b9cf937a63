"""A pod that only holds volumes for a test to read through `kubectl exec`: the workload image,
asleep, as Pod Security's `restricted` level requires."""

from __future__ import annotations

from typing import Any

IMAGE = "localhost/mtls-workload:dev"

IDENTITY_MOUNT = "/var/run/identity"
CREDENTIAL_BUNDLE = f"{IDENTITY_MOUNT}/credential.pem"


def sleeper_pod(
    namespace: str, name: str, mounts: dict[str, str], volumes: list[dict[str, Any]]
) -> dict[str, Any]:
    """`mounts`: the mount path of each volume, by volume name."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": name,
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "infinity"],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": volume, "mountPath": path, "readOnly": True}
                        for volume, path in mounts.items()
                    ],
                }
            ],
            "volumes": volumes,
        },
    }


def identity_pod(namespace: str, name: str, max_expiration_seconds: int = 3600) -> dict[str, Any]:
    """A pod whose kubelet asks the operator's signer for its certificate; the container starts
    only once the credential bundle is written."""
    identity = {
        "name": "identity",
        "projected": {
            "sources": [
                {
                    "podCertificate": {
                        "signerName": "mtls.dev/pod-identity",
                        "keyType": "ECDSAP256",
                        "maxExpirationSeconds": max_expiration_seconds,
                        "credentialBundlePath": "credential.pem",
                    }
                }
            ]
        },
    }
    return sleeper_pod(namespace, name, {"identity": IDENTITY_MOUNT}, [identity])
