"""Helpers for tests against a real API server: how they reach the cluster,
the names and grants their namespaces carry, and small readers and waiters
over the API."""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mtls_operator.cli.recipe import write_private_file

from localcluster import LocalCluster

GROUP, VERSION, PLURAL = "mtls.dev", "v1alpha1", "mtlscertificates"
OPERATOR_NAMESPACE = "mtls-operator"
CLUSTER_CA_SECRET = "mtls-operator-ca"
# Test namespaces carry this label; TEST_NAME_POLICY grants them the example
# names, addresses and URIs the issuance tests put in certificates.
TEST_NAMES_LABEL = "e2e.mtls.dev/test-names"
# The session operator keeps a ConfigMap mtls-ca-bundle in namespaces with this label.
TRUST_BUNDLE_LABEL = "e2e.mtls.dev/trust-bundle"
TEST_NAME_POLICY: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "MtlsPolicy",
    "metadata": {"name": "e2e-test-names"},
    "spec": {
        "namespaceSelector": {"matchLabels": {TEST_NAMES_LABEL: "true"}},
        "allow": {
            "dnsNames": ["*.example", "*.example.com", "*.test", "localhost"],
            "ipAddresses": ["127.0.0.0/8", "10.0.0.0/8", "fd00::/8"],
            "uris": ["https://*", "spiffe://*"],
            "emailAddresses": ["*@example.com", "*@shop.example"],
        },
    },
}
# Short enough that names under <namespace>.svc fit a 64-character Common Name.
NAMESPACE_MAX = 40
_T = TypeVar("_T")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def wait_for(
    probe: Callable[[], _T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> _T:
    """Poll until `probe` returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    last: _T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last is not None and last is not False:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def certificate(
    name: str, usage: str = "server", secret_name: str | None = None, **spec: object
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MtlsCertificate",
        "metadata": {"name": name},
        "spec": {"secretName": secret_name or f"{name}-tls", "usage": usage, **spec},
    }


def _custom(api: client.ApiClient) -> Any:
    # The client types custom objects as `object`; they are plain JSON dicts.
    return client.CustomObjectsApi(api)


def create_certificate(
    api: client.ApiClient, namespace: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = _custom(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, dict(body)
    )
    return result


def get_certificate(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = _custom(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return result


def patch_certificate(
    api: client.ApiClient, namespace: str, name: str, patch: Mapping[str, Any]
) -> None:
    _custom(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, dict(patch)
    )


def delete_certificate(api: client.ApiClient, namespace: str, name: str) -> None:
    _custom(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def condition(body: Mapping[str, Any] | None, kind: str = "Ready") -> dict[str, Any] | None:
    for item in ((body or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return None


def wait_ready(
    api: client.ApiClient, namespace: str, name: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The certificate once Ready=True for its current generation."""

    def ready() -> dict[str, Any] | None:
        body = get_certificate(api, namespace, name)
        found = condition(body)
        if (
            body
            and found
            and found["status"] == "True"
            and found.get("observedGeneration") == body["metadata"]["generation"]
        ):
            return body
        return None

    return wait_for(ready, timeout=timeout, what=f"{namespace}/{name} to be Ready")


def wait_reason(
    api: client.ApiClient, namespace: str, name: str, reason: str, timeout: float = 30.0
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = get_certificate(api, namespace, name)
        found = condition(body)
        return body if found and found.get("reason") == reason else None

    return wait_for(reached, timeout=timeout, what=f"{namespace}/{name} Ready reason {reason}")


def plain(api: client.ApiClient, model: object) -> dict[str, Any]:
    """A client model as the JSON the API sent, which is simpler to assert on."""
    result: dict[str, Any] = api.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]
    return result


def get_secret(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise
    return plain(api, secret)


def secret_data(api: client.ApiClient, namespace: str, name: str) -> dict[str, bytes]:
    secret = get_secret(api, namespace, name)
    assert secret is not None, f"Secret {namespace}/{name} does not exist"
    return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}


def mount(data: Mapping[str, bytes], directory: Path) -> Path:
    """Write a Secret's keys as files, the way a pod's volume mount shows them."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in data.items():
        write_private_file(directory / key, value)
    return directory


def events(api: client.ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = client.CoreV1Api(api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=MtlsCertificate"
    )
    items: list[dict[str, Any]] = plain(api, listed).get("items") or []
    return sorted(items, key=lambda e: (e.get("lastTimestamp") or "", e["metadata"]["name"]))


def event_reasons(api: client.ApiClient, namespace: str, name: str) -> list[str]:
    return [str(e.get("reason")) for e in events(api, namespace, name)]


@dataclass(frozen=True)
class KubeCluster:
    """How tests reach the cluster; `local` is None for a cluster given by MTLS_TEST_KUBECONFIG."""

    kubeconfig: Path
    kubectl: Path
    local: LocalCluster | None


def namespace_name(test_name: str) -> str:
    """A DNS-1123 label from the test's name plus a random suffix, at most 40 characters."""
    suffix = secrets.token_hex(3)
    stem = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")
    stem = stem[: NAMESPACE_MAX - len("t--") - len(suffix)].rstrip("-")
    return f"t-{stem}-{suffix}" if stem else f"t-{suffix}"
