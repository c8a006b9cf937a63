"""Tenants as the end-to-end tests play them: a user who is admin of one
namespace only (bound to Kubernetes' `admin` role, which the shipped roles
extend with MtlsCertificates), acting through real RBAC with `kubectl --as`
or an impersonating API client, and a neighbouring namespace."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config

from localcluster import Kubectl
from support.cluster import wait_for
from support.paths import REPO_ROOT

USER_ROLES = REPO_ROOT / "deploy" / "base" / "user-roles.yaml"
USER, GROUP = "mallory", "noisy-tenants"
# Over aiohttp's 512 KiB line limit, under what the API server stores.
LARGE = 600 * 1024
MANAGED_BY = {"app.kubernetes.io/managed-by": "mtls-operator"}


@dataclass(frozen=True)
class Tenants:
    noisy: str
    neighbour: str
    as_noisy: Kubectl
    kubeconfig: Path


@contextlib.contextmanager
def noisy_and_neighbour(kubectl: Kubectl, kubeconfig: Path) -> Iterator[Tenants]:
    """Two new namespaces; USER is admin of the noisy one only."""
    suffix = secrets.token_hex(2)
    noisy, neighbour = f"noisy-{suffix}", f"neighbour-{suffix}"
    kubectl("apply", "-f", str(USER_ROLES))
    for name in (noisy, neighbour):
        kubectl("create", "namespace", name)
    kubectl(
        "create", "rolebinding", "admins", "-n", noisy, "--clusterrole=admin", f"--group={GROUP}"
    )

    def as_noisy(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return kubectl(f"--as={USER}", f"--as-group={GROUP}", *args, **kwargs)

    wait_until_admin(as_noisy, noisy)  # type: ignore[arg-type]
    try:
        yield Tenants(noisy, neighbour, as_noisy, kubeconfig)  # type: ignore[arg-type]
    finally:
        for name in (noisy, neighbour):
            kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def wait_until_admin(as_user: Kubectl, namespace: str) -> None:
    """The aggregation controller folds mtls-operator-edit into `admin`:
    wait until the user bound to it in `namespace` may create certificates."""
    wait_for(
        lambda: (
            as_user(
                "auth", "can-i", "create", "mtlscertificates.mtls.dev", "-n", namespace, check=False
            ).stdout.strip()
            == "yes"
        ),
        timeout=30,
        what="admin to include MtlsCertificates",
    )


def impersonating(kubeconfig: Path, user: str = USER, group: str = GROUP) -> client.ApiClient:
    """An API client whose every request is authorised as `user` in `group`."""
    api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    api.set_default_header("Impersonate-User", user)  # type: ignore[no-untyped-call]
    api.set_default_header("Impersonate-Group", group)  # type: ignore[no-untyped-call]
    return api


def create_as_tenant(tenants: Tenants, body: dict[str, Any]) -> None:
    """`kubectl create`, not `apply`: apply would copy the object into an
    annotation, which the API server bounds to 256 KiB."""
    tenants.as_noisy("create", "-n", tenants.noisy, "-f", "-", input=json.dumps(body))


def secret(name: str, data: dict[str, bytes], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, **metadata},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
