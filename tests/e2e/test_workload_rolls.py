"""Workloads that cannot reload, against a real API server: a tenant's
Deployment, StatefulSet and DaemonSet annotated mtls.dev/reload are
recorded when first seen and rolled once (their pod template annotated,
as `kubectl rollout restart` does) after `kubectl mtls renew`, with Events
on them and on the certificate; a workload without the annotation, one
of another namespace, and a drift repair roll nothing. A new CRL in the
trust bundle rolls the workloads that read it, not one that reads only
the roots (`items`). The control plane
has no node: the workloads have no replicas, so their rollouts complete
by themselves (the kube-controller-manager runs their controllers)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from mtls_operator.api.revocations import CRL_KEY
from mtls_operator.api.trust_bundles import BUNDLE_KEY, CONFIGMAP_NAME
from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RESTARTED_FOR_ANNOTATION,
    WorkloadKind,
)

from e2e.plugin import kubectl_mtls
from e2e.tenants import Tenants, noisy_and_neighbour
from e2e.test_renewal import run_cli
from localcluster import Kubectl
from operator_process import OperatorProcess
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    TRUST_BUNDLE_LABEL,
    KubeCluster,
    certificate,
    events,
    get_certificate,
    wait_for,
    wait_ready,
)
from support.scrape import total
from support.workloads import workload_body

SECRET = "web-tls"
FOLLOWERS = {
    "web": WorkloadKind.DEPLOYMENT,
    "db": WorkloadKind.STATEFUL_SET,
    "agent": WorkloadKind.DAEMON_SET,
}
# The operator's --workload-roll-window (its default), and a margin for a busy machine.
WINDOW = 5.0
SETTLE = WINDOW + 5.0


@pytest.fixture
def tenants(
    operator: OperatorProcess, kube_cluster: KubeCluster, kubectl: Kubectl
) -> Iterator[Tenants]:
    with noisy_and_neighbour(kubectl, kube_cluster.kubeconfig) as made:
        yield made


def workload(kubectl: Kubectl, kind: WorkloadKind, name: str, namespace: str) -> dict[str, Any]:
    found = kubectl("get", kind.value.lower(), name, "-n", namespace, "-o", "json")
    body: dict[str, Any] = json.loads(found.stdout)
    return body


def workload_annotations(body: dict[str, Any]) -> dict[str, str]:
    return dict(body["metadata"].get("annotations") or {})


def template_annotations(body: dict[str, Any]) -> dict[str, str]:
    return dict(body["spec"]["template"]["metadata"].get("annotations") or {})


def workload_events(kubectl: Kubectl, kind: WorkloadKind, name: str, namespace: str) -> list[str]:
    """`reason: message` of the Events about one workload."""
    selector = f"involvedObject.kind={kind.value},involvedObject.name={name}"
    listed = kubectl("get", "events", "-n", namespace, "--field-selector", selector, "-o", "json")
    return [f"{e['reason']}: {e['message']}" for e in json.loads(listed.stdout)["items"]]


def recorded_at_first_sight(
    kubectl: Kubectl, kind: WorkloadKind, name: str, namespace: str
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body = workload(kubectl, kind, name, namespace)
        return body if MOUNTED_DIGEST_ANNOTATION in workload_annotations(body) else None

    return wait_for(probe, timeout=30, what=f"{kind.value} {name}'s first sight recorded")


def test_a_renewal_rolls_each_workload_that_asks_once_and_nothing_else(
    operator: OperatorProcess,
    tenants: Tenants,
    kubectl: Kubectl,
    kube_api: client.ApiClient,
    tmp_path: Path,
) -> None:
    ns, neighbour = tenants.noisy, tenants.neighbour
    tenants.as_noisy(
        "create",
        "-n",
        ns,
        "-f",
        "-",
        input=json.dumps(
            certificate("web", "server", secret_name=SECRET, dnsNames=[f"web.{ns}.svc"])
        ),
    )
    wait_ready(kube_api, ns, "web")
    for name, kind in FOLLOWERS.items():
        body = workload_body(name, kind=kind, secrets=[SECRET])
        tenants.as_noisy("create", "-n", ns, "-f", "-", input=json.dumps(body))
    plain = workload_body("plain", secrets=[SECRET], follows=False)
    tenants.as_noisy("create", "-n", ns, "-f", "-", input=json.dumps(plain))
    # The neighbour's own workload, mounting a Secret of the same name (of its namespace).
    elsewhere = workload_body("web", namespace=neighbour, secrets=[SECRET])
    kubectl("create", "-f", "-", input=json.dumps(elsewhere))

    first = {
        name: recorded_at_first_sight(kubectl, kind, name, ns) for name, kind in FOLLOWERS.items()
    }
    neighbours = recorded_at_first_sight(kubectl, WorkloadKind.DEPLOYMENT, "web", neighbour)
    for body in first.values():
        assert RESTARTED_FOR_ANNOTATION not in template_annotations(body), (
            "first sight rolls nothing"
        )

    listed = kubectl_mtls(
        kubectl, tmp_path, "status", "-n", ns, "-o", "wide", kubeconfig=tenants.kubeconfig
    )
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert (
        row[header.index("WORKLOADS") :].split()[0]
        == "DaemonSet/agent,Deployment/web,StatefulSet/db"
    )

    renewed = kubectl_mtls(
        kubectl, tmp_path, "renew", "web", "-n", ns, kubeconfig=tenants.kubeconfig
    )
    assert renewed.returncode == 0, renewed.stderr
    wait_for(
        lambda: (get_certificate(kube_api, ns, "web") or {}).get("status", {}).get("revision") == 2,
        timeout=30,
        what="the certificate renewed",
    )
    started = time.monotonic()

    def rolled() -> dict[str, dict[str, Any]] | None:
        now = {name: workload(kubectl, kind, name, ns) for name, kind in FOLLOWERS.items()}
        done = all(RESTARTED_FOR_ANNOTATION in template_annotations(b) for b in now.values())
        return now if done else None

    after = wait_for(rolled, timeout=60, what="every follower rolled")
    print(f"rolled {time.monotonic() - started:.1f} s after the renewal was written")
    time.sleep(SETTLE)  # long enough for a second roll, if there were one
    for name, kind in FOLLOWERS.items():
        now = workload(kubectl, kind, name, ns)
        assert now["metadata"]["generation"] == first[name]["metadata"]["generation"] + 1, (
            f"{name}: rolled exactly once"
        )
        digest = template_annotations(now)[RESTARTED_FOR_ANNOTATION]
        assert (
            digest
            == workload_annotations(now)[MOUNTED_DIGEST_ANNOTATION]
            == template_annotations(after[name])[RESTARTED_FOR_ANNOTATION]
        )
        assert digest != workload_annotations(first[name])[MOUNTED_DIGEST_ANNOTATION]
        [event] = workload_events(kubectl, kind, name, ns)
        assert event.startswith(f"CertificateRolled: rolled for Secret {SECRET} (serial "), event

    untouched = workload(kubectl, WorkloadKind.DEPLOYMENT, "plain", ns)
    assert untouched["metadata"]["generation"] == 1
    assert MOUNTED_DIGEST_ANNOTATION not in workload_annotations(untouched)
    assert RESTARTED_FOR_ANNOTATION not in template_annotations(untouched)
    other = workload(kubectl, WorkloadKind.DEPLOYMENT, "web", neighbour)
    # (A Deployment's generation counts changes of its annotations too.)
    assert other["metadata"]["generation"] == neighbours["metadata"]["generation"]
    assert RESTARTED_FOR_ANNOTATION not in template_annotations(other)

    on_certificate = [
        e["message"] for e in events(kube_api, ns, "web") if e["reason"] == "WorkloadRolled"
    ]
    assert sorted(m.split(" rolled,")[0] for m in on_certificate) == [
        "DaemonSet agent",
        "Deployment web",
        "StatefulSet db",
    ]
    scraped = operator.metrics()
    assert total(scraped, "mtls_operator_workload_rolls_total", namespace=ns, result="success") == 3


def test_a_drift_repair_rolls_nothing(
    operator: OperatorProcess, tenants: Tenants, kubectl: Kubectl, kube_api: client.ApiClient
) -> None:
    ns = tenants.noisy
    body = certificate("web", "server", secret_name=SECRET, dnsNames=[f"web.{ns}.svc"])
    tenants.as_noisy("create", "-n", ns, "-f", "-", input=json.dumps(body))
    wait_ready(kube_api, ns, "web")
    deployment = workload_body("web", secrets=[SECRET])
    tenants.as_noisy("create", "-n", ns, "-f", "-", input=json.dumps(deployment))
    first = recorded_at_first_sight(kubectl, WorkloadKind.DEPLOYMENT, "web", ns)

    # A label for the Secret: the operator rewrites its metadata, not its certificate.
    template = {"spec": {"secretTemplate": {"labels": {"team": "payments"}}}}
    tenants.as_noisy(
        "patch", "mtlscertificate", "web", "-n", ns, "--type", "merge", "-p", json.dumps(template)
    )

    def relabelled() -> bool:
        found = kubectl("get", "secret", SECRET, "-n", ns, "-o", "json")
        labels: dict[str, str] = json.loads(found.stdout)["metadata"].get("labels") or {}
        return labels.get("team") == "payments"

    wait_for(relabelled, timeout=30, what="the Secret's drift repaired")
    time.sleep(SETTLE)
    now = workload(kubectl, WorkloadKind.DEPLOYMENT, "web", ns)
    assert now["metadata"]["generation"] == first["metadata"]["generation"]
    assert RESTARTED_FOR_ANNOTATION not in template_annotations(now)
    assert (
        workload_annotations(now)[MOUNTED_DIGEST_ANNOTATION]
        == workload_annotations(first)[MOUNTED_DIGEST_ANNOTATION]
    )
    assert workload_events(kubectl, WorkloadKind.DEPLOYMENT, "web", ns) == []


def bundle_with_crl(kubectl: Kubectl, namespace: str) -> dict[str, str] | None:
    found = kubectl("get", "configmap", CONFIGMAP_NAME, "-n", namespace, "-o", "json", check=False)
    if found.returncode != 0:
        return None
    data: dict[str, str] = json.loads(found.stdout).get("data") or {}
    return data if data.get(CRL_KEY) else None


def test_a_new_crl_rolls_the_workloads_that_read_it_and_no_other(
    operator: OperatorProcess, tenants: Tenants, kubectl: Kubectl
) -> None:
    ns = tenants.noisy
    kubectl("label", "namespace", ns, f"{TRUST_BUNDLE_LABEL}=true")
    before = wait_for(
        lambda: bundle_with_crl(kubectl, ns), timeout=30, what="the bundle and its CRL published"
    )
    readers = {
        "whole": workload_body("whole", config_maps=[CONFIGMAP_NAME]),
        "crl": workload_body(
            "crl", config_maps=[CONFIGMAP_NAME], config_map_keys={CONFIGMAP_NAME: [CRL_KEY]}
        ),
    }
    roots = workload_body(
        "roots", config_maps=[CONFIGMAP_NAME], config_map_keys={CONFIGMAP_NAME: [BUNDLE_KEY]}
    )
    for body in (*readers.values(), roots):
        tenants.as_noisy("create", "-n", ns, "-f", "-", input=json.dumps(body))
    first = {
        name: recorded_at_first_sight(kubectl, WorkloadKind.DEPLOYMENT, name, ns)
        for name in (*readers, "roots")
    }

    # A serial never revoked before (the record outlives each test), by an administrator.
    serial = secrets.randbits(63) | 1 << 62
    revoked = run_cli(
        operator.kubeconfig,
        "revoke", "--serial", f"{serial:x}", "--ca", f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr

    def rolled() -> bool:
        return all(
            RESTARTED_FOR_ANNOTATION
            in template_annotations(workload(kubectl, WorkloadKind.DEPLOYMENT, name, ns))
            for name in readers
        )

    wait_for(rolled, timeout=60, what="the Deployments that read the CRL rolled")
    after = bundle_with_crl(kubectl, ns)
    assert after is not None
    assert after[CRL_KEY] != before[CRL_KEY]
    assert after[BUNDLE_KEY] == before[BUNDLE_KEY]
    time.sleep(SETTLE)  # long enough for a roll of the roots' reader, if there were one
    now = workload(kubectl, WorkloadKind.DEPLOYMENT, "roots", ns)
    assert now["metadata"]["generation"] == first["roots"]["metadata"]["generation"]
    assert RESTARTED_FOR_ANNOTATION not in template_annotations(now)
    assert (
        workload_annotations(now)[MOUNTED_DIGEST_ANNOTATION]
        == workload_annotations(first["roots"])[MOUNTED_DIGEST_ANNOTATION]
    )
    assert workload_events(kubectl, WorkloadKind.DEPLOYMENT, "roots", ns) == []
