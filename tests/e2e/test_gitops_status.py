"""What GitOps users see, from their tools' own code on the real objects at
each stage: kstatus (sigs.k8s.io/cli-utils, what Flux uses) and Argo CD's
health check (the shipped Lua, under Lua 5.1). examples/gitops/README.md
states the same table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from gitops_checks import argocd_health, kstatus
from localcluster import Kubectl
from operator_process import OperatorProcess
from support.cluster import (
    certificate,
    create_certificate,
    get_certificate,
    patch_certificate,
    wait_for,
    wait_ready,
    wait_reason,
)

# (stage, kstatus, Argo CD): the table examples/gitops/README.md states.
EXPECTED = {
    "applied, not yet looked at": ("InProgress", "Progressing"),
    "Ready": ("Current", "Healthy"),
    "InvalidSpec": ("Failed", "Degraded"),
    "PolicyDenied": ("Failed", "Degraded"),
    "SecretConflict": ("Failed", "Degraded"),
    "CANotFound": ("InProgress", "Progressing"),
    "spec changed, not yet re-issued": ("InProgress", "Progressing"),
    "re-issued": ("Current", "Healthy"),
}


def verdicts(body: dict[str, Any]) -> tuple[str, str]:
    [flux] = kstatus([body])
    [argo] = argocd_health([body])
    return flux["status"], argo["status"]


def current(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body = get_certificate(api, namespace, name)
    assert body is not None
    return body


def test_every_stage_as_flux_and_argocd_see_it(
    operator_process: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    seen: dict[str, tuple[str, str]] = {}
    operator_process.stop()
    try:
        create_certificate(
            kube_api, namespace, certificate("web", "server", dnsNames=[f"web.{namespace}.svc"])
        )
        seen["applied, not yet looked at"] = verdicts(current(kube_api, namespace, "web"))
    finally:
        operator_process.start()
    seen["Ready"] = verdicts(wait_ready(kube_api, namespace, "web"))

    for name, spec, reason in (
        ("bad", {"dnsNames": ["bad_name.example"]}, "InvalidSpec"),
        ("denied", {"dnsNames": ["api.kube-system.svc"]}, "PolicyDenied"),
        ("taken", {"dnsNames": [f"taken.{namespace}.svc"]}, "SecretConflict"),
        (
            "waits",
            {"dnsNames": [f"waits.{namespace}.svc"], "caSecretName": "missing-ca"},
            "CANotFound",
        ),
    ):
        if reason == "SecretConflict":
            kubectl(
                "create", "secret", "generic", "taken-tls", "-n", namespace, "--from-literal=a=b"
            )
        create_certificate(kube_api, namespace, certificate(name, "server", **spec))
        seen[reason] = verdicts(wait_reason(kube_api, namespace, name, reason))

    operator_process.stop()
    try:
        patch_certificate(kube_api, namespace, "web", {"spec": {"duration": "720h"}})
        seen["spec changed, not yet re-issued"] = verdicts(current(kube_api, namespace, "web"))
    finally:
        operator_process.start()
    seen["re-issued"] = verdicts(wait_ready(kube_api, namespace, "web"))
    print(json.dumps(seen, indent=1))
    assert seen == EXPECTED


@pytest.mark.usefixtures("mtls_crd")
def test_policies_read_the_same(
    operator_process: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    def policy(name: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "mtls.dev/v1alpha1",
            "kind": "MtlsPolicy",
            "metadata": {"name": f"{namespace}-{name}"},
            "spec": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                **spec,
            },
        }

    def read(name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            kubectl("get", "mtlspolicy", f"{namespace}-{name}", "-o", "json").stdout
        )
        return found

    operator_process.stop()
    try:
        kubectl("apply", "-f", "-", input=json.dumps(policy("good")))
        [flux] = kstatus([read("good")])
        assert flux["status"] == "InProgress"
    finally:
        operator_process.start()
    kubectl("apply", "-f", "-", input=json.dumps(policy("bad", maxDuration="1d")))
    try:

        def settled(name: str) -> str | None:
            body = read(name)
            generation = body["metadata"]["generation"]
            return (
                kstatus([body])[0]["status"]
                if (body.get("status") or {}).get("observedGeneration") == generation
                else None
            )

        assert wait_for(lambda: settled("good"), what="the good policy observed") == "Current"
        assert wait_for(lambda: settled("bad"), what="the bad policy observed") == "Failed"
    finally:
        for name in ("good", "bad"):
            kubectl("delete", "mtlspolicy", f"{namespace}-{name}", "--ignore-not-found")


def test_objects_made_before_the_status_default_read_as_in_progress(
    operator_process: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    """The API server applies the CRD's status default when it reads an
    object back, so one stored before the default existed (never looked at)
    is not mistaken for done either."""
    crd_path = Path(__file__).parents[2] / "crds" / "mtlscertificates.yaml"
    crd = yaml.safe_load(crd_path.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    without_default = json.loads(json.dumps(crd))
    del without_default["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"][
        "default"
    ]
    assert schema["default"] == {"observedGeneration": -1}
    operator_process.stop()
    try:
        apply = (
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=mtls-e2e",
            "-f",
            "-",
        )
        kubectl(*apply, input=json.dumps(without_default))
        create_certificate(
            kube_api, namespace, certificate("old", "server", dnsNames=[f"old.{namespace}.svc"])
        )
        assert current(kube_api, namespace, "old").get("status") is None
        kubectl(*apply, input=json.dumps(crd))
        body = wait_for(
            lambda: (
                current(kube_api, namespace, "old")
                if current(kube_api, namespace, "old").get("status")
                else None
            ),
            what="the default on read",
        )
        assert body["status"] == {"observedGeneration": -1}
        assert verdicts(body) == ("InProgress", "Progressing")
    finally:
        kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=mtls-e2e",
            "-f",
            str(crd_path),
        )
        operator_process.start()
    wait_ready(kube_api, namespace, "old")
