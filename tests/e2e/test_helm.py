"""The Helm chart against a real API server, with the real helm: its render passes a
server-side dry run, and `helm install`, `upgrade` and `uninstall` create, change and remove
what the chart renders. No kubelet runs, so the operator's pods never start: the objects and
the permissions they grant are what is checked.

The chart's names are cluster-wide and fixed (CRDs, ClusterRoles, ClusterRoleBindings), and
the session shares them: the `mtls_crd` fixture's CRDs, and deploy/'s RBAC when
test_deploy.py ran first. So each release is installed with --take-ownership, and the
`cluster_objects_restored` fixture puts back afterwards every cluster-wide object the chart
names exactly as it was before (the CRDs through apply_crd, as the fixture installs them).
CRD removal with crds.keep=false is tested on a copy of the chart whose CRDs are renamed into
an API group of this test's own, so that no other test's CRDs or MtlsCertificates are deleted."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.crd import apply_crd
from localcluster import Kubectl
from support.chart import CHART, Helm, documents, key
from support.cluster import KubeCluster, namespace_name, wait_for

CLUSTER_KINDS = ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding")
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")
TEST_GROUP = "helm-e2e.mtls.dev"


@pytest.fixture
def helm(kube_cluster: KubeCluster, tmp_path: Path) -> Helm:
    return Helm(tmp_path / "helm-home", kube_cluster.kubeconfig)


@pytest.fixture
def release_namespace(request: pytest.FixtureRequest, kubectl: Kubectl) -> Iterator[str]:
    """A namespace name for the release; `helm install --create-namespace` makes it."""
    name = namespace_name(request.node.name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")


def cluster_wide(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] in CLUSTER_KINDS]


def get(kubectl: Kubectl, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
    where = ["-n", namespace] if namespace else []
    found = kubectl("get", kind, name, *where, "-o", "json", "--ignore-not-found")
    return json.loads(found.stdout) if found.stdout.strip() else None


@pytest.fixture
def cluster_objects_restored(
    helm: Helm, kubectl: Kubectl, mtls_crd: None, tmp_path: Path
) -> Iterator[None]:
    """Every cluster-wide object the chart names, as it was before the test, afterwards."""
    rendered = documents(helm("template", "x", str(CHART), "--kube-version", "1.37.2").stdout)
    names = cluster_wide(rendered)
    saved = {n: get(kubectl, *n) for n in names}
    yield
    # The fixture's CRDs first, then every object exactly as it was: a
    # server-side apply would also take over (and drop) what an earlier
    # client-side apply recorded, such as its last-applied annotation.
    apply_crd(kubectl)
    for (kind, name), before in saved.items():
        if before is None:
            kubectl("delete", kind, name, "--ignore-not-found")
            continue
        for field in SERVER_FIELDS:
            before["metadata"].pop(field, None)
        before.pop("status", None)
        verb = "replace" if get(kubectl, kind, name) else "create"
        kubectl(verb, "-f", "-", input=json.dumps(before))
    for (kind, name), before in saved.items():
        after = get(kubectl, kind, name)
        assert (after is None) == (before is None), f"{kind}/{name} not restored"
        if before is not None and after is not None:
            for part in ("labels", "annotations"):
                assert kept(after, part) == kept(before, part), (kind, name)


# kubectl's own record of a client-side apply: `kubectl replace` rewrites it
# whenever the object has one, so it is the one annotation not compared.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def kept(body: dict[str, Any], part: str) -> dict[str, str] | None:
    values = body["metadata"].get(part)
    if values is None:
        return None
    return {key: value for key, value in values.items() if key != LAST_APPLIED} or None


def install(helm: Helm, namespace: str, *args: str, chart: Path = CHART) -> str:
    return helm(
        "install", "mtls-operator", str(chart), "-n", namespace, "--create-namespace",
        "--take-ownership", "--wait=false", *args,
    ).stdout  # fmt: skip


def can_i(kubectl: Kubectl, namespace: str, *args: str) -> bool:
    account = f"system:serviceaccount:{namespace}:mtls-operator"
    answer = kubectl("auth", "can-i", "--as", account, *args, check=False).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


def operator_args(kubectl: Kubectl, namespace: str) -> list[str]:
    deployment = get(kubectl, "deployment", "mtls-operator", namespace)
    assert deployment is not None
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


def test_the_render_passes_a_server_side_dry_run(
    helm: Helm, kubectl: Kubectl, mtls_crd: None, release_namespace: str
) -> None:
    # A dry run creates nothing, so the namespaces it refers to must exist already.
    kubectl("create", "namespace", release_namespace)
    for values in ([], ["--set", f"watchNamespaces={{{release_namespace}}}"]):
        rendered = helm(
            "template", "mtls-operator", str(CHART), "-n", release_namespace,
            "--kube-version", "1.37.2", *values,
        ).stdout  # fmt: skip
        applied = kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
        assert "(server dry run)" in applied.stdout
        assert len(documents(rendered)) == applied.stdout.count("(server dry run)")


@pytest.mark.usefixtures("cluster_objects_restored")
def test_install_upgrade_and_uninstall(
    helm: Helm, kubectl: Kubectl, release_namespace: str
) -> None:
    ns = release_namespace
    output = install(helm, ns)

    # The notes: label the namespace as deploy/ does, then what to do next.
    assert (
        f"kubectl label namespace {ns} pod-security.kubernetes.io/enforce=restricted "
        "pod-security.kubernetes.io/enforce-version=latest"
    ) in output
    assert "kubectl mtls status -A" in output

    manifest = documents(helm("get", "manifest", "mtls-operator", "-n", ns).stdout)
    assert {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Role",
            "RoleBinding", "ServiceAccount", "Deployment", "Service"} <= {
        o["kind"] for o in manifest
    }  # fmt: skip
    for obj in manifest:
        live = get(
            kubectl, obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace", "")
        )
        assert live is not None, f"{key(obj)} was not created"
        for field in ("spec", "rules", "roleRef", "subjects"):
            if field in obj and obj["kind"] != "CustomResourceDefinition":
                # The API server adds defaults, never removes what was given.
                assert _contains(live[field], obj[field]), f"{key(obj)}: {field} differs"
    assert operator_args(kubectl, ns) == [
        "run", "--all-namespaces", "--bootstrap-ca", "--log-format", "json"
    ]  # fmt: skip

    # The permissions, cluster-wide, as the release's ServiceAccount.
    assert can_i(kubectl, ns, "watch", "mtlscertificates.mtls.dev", "-n", "default")
    assert can_i(kubectl, ns, "create", "secrets", "-n", "default")
    assert not can_i(kubectl, ns, "delete", "secrets", "-n", "default")
    assert can_i(kubectl, ns, "create", "leases.coordination.k8s.io", "-n", ns)
    assert can_i(kubectl, ns, "update", "leases.coordination.k8s.io/mtls-operator", "-n", ns)
    assert not can_i(kubectl, ns, "update", "leases.coordination.k8s.io/other", "-n", ns)
    assert can_i(kubectl, ns, "patch", "mtlspolicies.mtls.dev", "--subresource=status")
    assert can_i(kubectl, ns, "patch", "statefulsets.apps", "-n", "default")
    assert not can_i(kubectl, ns, "update", "statefulsets.apps", "-n", "default")

    certificate = {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": "kept", "namespace": ns},
        "spec": {"secretName": "kept-tls", "usage": "server", "commonName": f"kept.{ns}.svc"},
    }
    kubectl("apply", "-f", "-", input=json.dumps(certificate))

    # An upgrade to one replica, text logs and the release's own namespace only.
    helm(
        "upgrade", "mtls-operator", str(CHART), "-n", ns, "--reuse-values",
        "--set", "replicas=1", "--set", "logFormat=text", "--set", f"watchNamespaces={{{ns}}}",
    )  # fmt: skip
    deployment = get(kubectl, "deployment", "mtls-operator", ns)
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 1
    assert operator_args(kubectl, ns) == [
        "run", "--namespace", ns, "--bootstrap-ca", "--log-format", "text"
    ]  # fmt: skip
    assert get(kubectl, "clusterrolebinding", "mtls-operator") is None
    assert get(kubectl, "rolebinding", "mtls-operator", ns) is not None
    assert can_i(kubectl, ns, "create", "secrets", "-n", ns)
    assert not can_i(kubectl, ns, "get", "secrets", "-n", "default")

    helm("uninstall", "mtls-operator", "-n", ns, "--wait")
    for kind, name in (
        ("deployment", "mtls-operator"),
        ("serviceaccount", "mtls-operator"),
        ("role", "mtls-operator-leader-election"),
    ):
        assert get(kubectl, kind, name, ns) is None, f"{kind}/{name} outlived the release"
    for kind, name in (("clusterrole", "mtls-operator"), ("clusterrolebinding", "mtls-operator-discovery")):  # fmt: skip
        assert get(kubectl, kind, name) is None, f"{kind}/{name} outlived the release"
    # crds.keep: the CRDs stay, and with them the certificate.
    for crd in ("mtlscertificates.mtls.dev", "mtlspolicies.mtls.dev"):
        assert get(kubectl, "crd", crd) is not None, f"{crd} was deleted"
    assert get(kubectl, "mtlscertificate", "kept", ns) is not None


def _contains(live: Any, given: Any) -> bool:
    if isinstance(given, dict):
        return isinstance(live, dict) and all(
            k in live and _contains(live[k], v) for k, v in given.items()
        )
    if isinstance(given, list):
        return (
            isinstance(live, list)
            and len(live) == len(given)
            and all(_contains(a, b) for a, b in zip(live, given, strict=True))
        )
    return bool(live == given) or str(live) == str(given)


def renamed_chart(directory: Path) -> Path:
    """The chart with its CRDs in TEST_GROUP: the same templates, CRDs no other test uses."""
    chart = directory / "mtls-operator"
    shutil.copytree(CHART, chart)
    for crd in (chart / "files" / "crds").glob("*.yaml"):
        crd.write_text(crd.read_text().replace("mtls.dev", TEST_GROUP))
    return chart


@pytest.mark.usefixtures("cluster_objects_restored")
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "delete"])
def test_crds_keep_decides_whether_uninstall_deletes_the_crds(
    helm: Helm, kubectl: Kubectl, release_namespace: str, tmp_path: Path, keep: bool
) -> None:
    ns = release_namespace
    chart = renamed_chart(tmp_path)
    crds = [f"mtlscertificates.{TEST_GROUP}", f"mtlspolicies.{TEST_GROUP}"]
    try:
        install(helm, ns, "--set", f"crds.keep={str(keep).lower()}", chart=chart)
        for crd in crds:
            kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")
        certificate = {
            "apiVersion": f"{TEST_GROUP}/v1alpha1",
            "kind": "MtlsCertificate",
            "metadata": {"name": "kept", "namespace": ns},
            "spec": {"secretName": "kept-tls", "usage": "server", "commonName": "kept"},
        }
        wait_for(
            lambda: kubectl("apply", "-f", "-", input=json.dumps(certificate), check=False)
            .returncode == 0,
            timeout=30,
            what="the renamed MtlsCertificate kind to be served",
        )  # fmt: skip
        helm("uninstall", "mtls-operator", "-n", ns, "--wait")
        if keep:
            for crd in crds:
                assert get(kubectl, "crd", crd) is not None, f"{crd} was deleted"
            listed = kubectl("get", f"mtlscertificates.{TEST_GROUP}", "-n", ns, "-o", "name")
            assert listed.stdout.split() == [f"mtlscertificate.{TEST_GROUP}/kept"]
        else:
            wait_for(
                lambda: all(get(kubectl, "crd", crd) is None for crd in crds),
                timeout=60,
                what="the CRDs to be deleted",
            )
    finally:
        for crd in crds:
            kubectl("delete", "crd", crd, "--ignore-not-found", "--wait=false")
    # The session's own CRDs were not touched either way.
    assert yaml.safe_load(kubectl("get", "crd", "mtlscertificates.mtls.dev", "-o", "yaml").stdout)
