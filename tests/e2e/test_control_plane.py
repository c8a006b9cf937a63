"""Smoke tests proving the e2e control plane is a real one: the features the operator relies
on (CRDs with CEL validation, garbage collection, namespace deletion, label-selected watches,
ServiceAccount tokens) work end to end."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from localcluster import Kubectl

VERSIONS_ENV = Path(__file__).resolve().parents[2] / "hack" / "control-plane" / "versions.env"

GROUP = "smoke.mtls.dev"
CRD_NAME = f"widgets.{GROUP}"
CEL_MESSAGE = "spec.minReplicas must not exceed spec.replicas"

T = TypeVar("T")


def pinned_kubernetes_version() -> str:
    for line in VERSIONS_ENV.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "KUBERNETES_VERSION":
            return value.strip()
    raise AssertionError(f"no KUBERNETES_VERSION in {VERSIONS_ENV}")


def eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `probe` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.25)


def gone(read: Callable[[], object]) -> bool | None:
    """True once `read` answers 404, None while the object still exists."""
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return None


def test_client_and_server_run_the_pinned_version(kubectl: Kubectl) -> None:
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    expected = pinned_kubernetes_version()
    assert versions["clientVersion"]["gitVersion"] == expected
    assert versions["serverVersion"]["gitVersion"] == expected
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def widget_crd() -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "required": ["replicas"],
        "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "minReplicas": {"type": "integer", "minimum": 0},
        },
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.minReplicas) || self.minReplicas <= self.replicas",
                "message": CEL_MESSAGE,
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}
                    },
                }
            ],
        },
    }


def widget(name: str, replicas: int, min_replicas: int) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "minReplicas": min_replicas},
        }
    )


def apply_when_discovered(kubectl: Kubectl, namespace: str, manifest: str) -> None:
    """Server-side apply, retried while kubectl's discovery has not seen the new CRD yet."""

    def attempt() -> bool | None:
        result = kubectl(
            "apply", "--server-side", "-n", namespace, "-f", "-", input=manifest, check=False
        )
        if result.returncode == 0:
            return True
        assert "no matches for kind" in result.stderr, result.stderr
        return None

    eventually(attempt, 30, "the Widget kind showing up in discovery")


def test_crd_with_cel_validation(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(widget_crd()))
    try:
        kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=30s")
        apply_when_discovered(kubectl, namespace, widget("good", replicas=3, min_replicas=1))

        rejected = kubectl(
            "apply",
            "--server-side",
            "-n",
            namespace,
            "-f",
            "-",
            input=widget("bad", replicas=1, min_replicas=3),
            check=False,
        )
        assert rejected.returncode != 0
        assert CEL_MESSAGE in rejected.stderr
        assert "bad" not in kubectl("get", "widgets", "-n", namespace, "-o", "name").stdout
    finally:
        kubectl("delete", "crd", CRD_NAME, "--ignore-not-found", "--timeout=60s")


def test_garbage_collector_deletes_dependents(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    assert owner.metadata is not None
    assert owner.metadata.uid is not None
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])
        ),
    )

    core.delete_namespaced_config_map("owner", namespace)

    eventually(
        lambda: gone(lambda: core.read_namespaced_config_map("dependent", namespace)),
        30,
        "garbage collection of the dependent ConfigMap",
    )


def test_deleted_namespace_goes_away(
    kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    # Content makes the namespace controller do real work before it can finalize.
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"))
    )

    kubectl("delete", "namespace", namespace, "--wait=false")

    eventually(
        lambda: gone(lambda: core.read_namespace(namespace)),
        60,
        f"deletion of namespace {namespace}",
    )


def test_watch_with_label_selector(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    listed = core.list_namespaced_secret(namespace).metadata
    assert listed is not None
    start = listed.resource_version
    # Unlabelled first: events arrive in order, so once the labelled Secret's event is seen,
    # the unlabelled one would already have shown up had the selector not filtered it.
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="unlabelled"), string_data={"k": "v"}),
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="labelled", labels={"smoke.mtls.dev/watch": "yes"}),
            string_data={"k": "v"},
        ),
    )

    seen: list[tuple[str, str]] = []
    # kubernetes.watch has no type annotations.
    watcher = watch.Watch()  # type: ignore[no-untyped-call]
    events = watcher.stream(  # type: ignore[no-untyped-call]
        core.list_namespaced_secret,
        namespace,
        label_selector="smoke.mtls.dev/watch=yes",
        resource_version=start,
        timeout_seconds=20,
    )
    for event in events:
        seen.append((event["type"], event["object"].metadata.name))
        if seen[-1] == ("ADDED", "labelled"):
            watcher.stop()  # type: ignore[no-untyped-call]

    assert seen == [("ADDED", "labelled")]


def test_service_account_token_request(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    # The serviceaccount controller creates `default` shortly after the namespace appears.
    eventually(
        lambda: present(lambda: core.read_namespaced_service_account("default", namespace)),
        30,
        "the default ServiceAccount",
    )

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    issued = core.create_namespaced_service_account_token("default", namespace, request).status
    assert issued is not None
    assert issued.token

    subject = f"system:serviceaccount:{namespace}:default"
    assert jwt_claims(issued.token)["sub"] == subject
    # The API server accepts what it signed: the signing and verification keys belong together.
    review = (
        client.AuthenticationV1Api(kube_api)
        .create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=issued.token))
        )
        .status
    )
    assert review is not None
    assert review.authenticated
    assert review.user is not None
    assert review.user.username == subject


def test_service_account_token_controller_fills_token_secrets(
    kube_api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube_api)
    eventually(
        lambda: present(lambda: core.read_namespaced_service_account("default", namespace)),
        30,
        "the default ServiceAccount",
    )
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(
                name="default-token", annotations={"kubernetes.io/service-account.name": "default"}
            ),
            type="kubernetes.io/service-account-token",
        ),
    )

    def filled() -> dict[str, bytes | str] | None:
        data = core.read_namespaced_secret("default-token", namespace).data
        return data if data and "token" in data else None

    data = eventually(filled, 30, "the token controller filling the Secret")
    assert {"ca.crt", "namespace", "token"} <= data.keys()
    assert base64.b64decode(data["namespace"]).decode() == namespace


def present(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims
