"""deploy/ against a real API server: `kubectl apply -k deploy/` installs, the Deployment's
pods are admitted under the namespace's Pod Security level, and the RBAC it grants is enough
for the operator and no more. The operator runs here as the ServiceAccount itself, with a
token from the TokenRequest API, so every call it makes is authorised by deploy/'s RBAC
alone. (No kubelet runs, so the Deployment's own pods never start.)"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from mtls_operator.api.workloads import MOUNTED_DIGEST_ANNOTATION

from localcluster import Kubectl
from operator_process import OperatorProcess
from support.cluster import (
    OPERATOR_NAMESPACE,
    KubeCluster,
    event_reasons,
    secret_data,
    wait_for,
    wait_ready,
)
from support.paths import REPO_ROOT
from support.workloads import workload_body

DEPLOY = REPO_ROOT / "deploy"
NAMESPACED_OVERLAY = DEPLOY / "overlays" / "namespaced"
EXAMPLES = REPO_ROOT / "examples"
SERVICE_ACCOUNT = "mtls-operator"
LEASE = "mtls-operator"
POD_SELECTOR = "app.kubernetes.io/name=mtls-operator,app.kubernetes.io/component=controller"
# What kopf and the operator log when the API refuses them something.
REFUSALS = ("403", "Forbidden", "forbidden", "Not enough permissions")


@pytest.fixture(scope="module")
def installed(kube_cluster: KubeCluster, kubectl: Kubectl, mtls_crd: None) -> None:
    """deploy/, installed as a user would: a server-side dry run, then the real thing."""
    # A server-side dry run creates nothing, so it cannot validate objects into a namespace
    # it would create itself; on a fresh cluster, create the namespace first.
    kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    kubectl("apply", "--dry-run=server", "-k", str(DEPLOY))
    if kube_cluster.local is None:
        pytest.skip("would start the operator's pods on a cluster that has nodes")
    kubectl("apply", "-k", str(DEPLOY))


@pytest.fixture(scope="module")
def token(installed: None, kubectl: Kubectl) -> str:
    result = kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration", "1h"
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def service_account_kubeconfig(
    kube_cluster: KubeCluster, token: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A kubeconfig for the ServiceAccount: the test cluster's server and CA, and its token."""
    admin = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in admin["contexts"]}
    cluster_name = contexts[admin["current-context"]]["cluster"]
    (cluster,) = [c["cluster"] for c in admin["clusters"] if c["name"] == cluster_name]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "cluster", "user": SERVICE_ACCOUNT}}],
        "current-context": "sa",
    }
    path = tmp_path_factory.mktemp("service-account") / "kubeconfig"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def as_operator(
    kube_cluster: KubeCluster,
    service_account_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Kubectl:
    """kubectl as the operator's ServiceAccount."""
    return Kubectl(
        kube_cluster.kubectl,
        service_account_kubeconfig,
        cache_dir=tmp_path_factory.mktemp("sa-kubectl-cache"),
    )


def can_i(as_operator: Kubectl, *args: str) -> bool:
    result = as_operator("auth", "can-i", *args, check=False)
    answer = result.stdout.strip()
    assert answer in ("yes", "no"), f"auth can-i {' '.join(args)}: {result.stdout}{result.stderr}"
    return answer == "yes"


def _run_flags() -> str:
    command = Path(sys.executable).parent / "mtls-operator"
    return subprocess.run(
        [str(command), "run", "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout


def leader_election_args() -> list[str]:
    """Leader election on, on the Lease the Role names, when this operator has it."""
    if "--leader-election" not in _run_flags():
        return []
    return ["--leader-election", "--lease-namespace", OPERATOR_NAMESPACE, "--lease-name", LEASE]


@pytest.fixture
def operator_as_service_account(
    service_account_kubeconfig: Path,
    operator_process: OperatorProcess,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """The operator serving `namespace` as the ServiceAccount, with a cluster CA of its own.

    The session operator (cluster-admin, every namespace) is stopped first, so that nothing
    but this one issues; the `operator` fixture restarts it for the tests that need it."""
    operator_process.stop()
    ca_secret = f"deploy-test-ca-{secrets.token_hex(3)}"
    process = OperatorProcess(
        service_account_kubeconfig,
        tmp_path / "operator.log",
        [
            "--namespace",
            namespace,
            "--cluster-ca-secret",
            f"{OPERATOR_NAMESPACE}/{ca_secret}",
            "--bootstrap-ca",
            *leader_election_args(),
        ],
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
        kubectl("delete", "secret", ca_secret, "-n", OPERATOR_NAMESPACE, "--ignore-not-found")


def issue_the_examples(api: client.ApiClient, kubectl: Kubectl, namespace: str) -> None:
    """The example server and client certificates become Ready, with Secrets and events.
    They are written for namespace demo: its names become the test namespace's."""
    for example in ("server-certificate.yaml", "client-certificate.yaml"):
        text = (EXAMPLES / example).read_text()
        text = text.replace(".demo.svc", f".{namespace}.svc").replace(
            "/ns/demo/", f"/ns/{namespace}/"
        )
        kubectl("apply", "-n", namespace, "-f", "-", input=text)
    for name, secret in (("payments", "payments-tls"), ("checkout", "checkout-tls")):
        # Generous: a standby waits up to a lease duration for a killed leader's Lease.
        wait_ready(api, namespace, name, timeout=60)
        assert {"tls.crt", "tls.key", "ca.crt"} <= set(secret_data(api, namespace, secret))
        assert event_reasons(api, namespace, name), f"no event for {name}"


def follow_a_workload(kubectl: Kubectl, namespace: str) -> None:
    """A Deployment that asks to be rolled and mounts the example's Secret is
    read and patched (its first sight recorded) by the operator's account."""
    body = workload_body("payments", namespace=namespace, secrets=["payments-tls"])
    kubectl("apply", "-f", "-", input=json.dumps(body))

    def recorded() -> str | None:
        found = kubectl("get", "deployment", "payments", "-n", namespace, "-o", "json")
        annotations = json.loads(found.stdout)["metadata"].get("annotations") or {}
        return annotations.get(MOUNTED_DIGEST_ANNOTATION)

    wait_for(recorded, timeout=30, what="the Deployment's first sight recorded")


def assert_no_refusals(process: OperatorProcess) -> None:
    log = process.log()
    refused = [line for line in log.splitlines() if any(word in line for word in REFUSALS)]
    assert not refused, "the API refused the operator something:\n" + "\n".join(refused)


def test_deploy_installs_and_its_pods_pass_pod_security(installed: None, kubectl: Kubectl) -> None:
    # Installing again changes nothing and fails nothing (what an upgrade does).
    kubectl("apply", "-k", str(DEPLOY))
    kubectl(
        "get",
        "-n",
        OPERATOR_NAMESPACE,
        "serviceaccount/mtls-operator",
        "service/mtls-operator-metrics",
    )

    # The ReplicaSet creates both pods; Pod Security admission (`restricted`, enforced on the
    # namespace) would refuse them if the pod spec fell short of it.
    def pods() -> list[str] | None:
        listed = kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-l", POD_SELECTOR, "-o", "name")
        names = listed.stdout.split()
        return names if len(names) == 2 else None

    wait_for(pods, timeout=30, what="the Deployment's 2 pods to be created")
    replica_sets = json.loads(
        kubectl(
            "get", "replicasets", "-n", OPERATOR_NAMESPACE, "-l", POD_SELECTOR, "-o", "json"
        ).stdout
    )
    for replica_set in replica_sets["items"]:
        for condition in replica_set["status"].get("conditions") or []:
            assert condition["type"] != "ReplicaFailure", condition


def test_the_operator_needs_no_more_than_deploy_grants(
    operator_as_service_account: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    issue_the_examples(kube_api, kubectl, namespace)
    follow_a_workload(kubectl, namespace)
    assert_no_refusals(operator_as_service_account)


def test_a_permission_taken_away_while_running_makes_it_not_ready_until_given_back(
    operator_as_service_account: OperatorProcess,
    kube_cluster: KubeCluster,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    """RBAC removed under a running operator: /readyz says which watch waits
    for what, the log says it once, and granting it again makes it ready."""
    if kube_cluster.local is None:
        pytest.skip("restarts the local API server")
    process = operator_as_service_account
    wait_for(lambda: process.readiness() == (200, "ok\n"), timeout=30, what="ready")
    binding = "mtls-operator-pod-signer"
    watch = f"/apis/certificates.k8s.io/v1/namespaces/{namespace}/podcertificaterequests"
    saved = json.loads(kubectl("get", "clusterrolebinding", binding, "-o", "json").stdout)
    for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        saved["metadata"].pop(field, None)
    kubectl("delete", "clusterrolebinding", binding)
    try:
        # An open watch outlives its permission: end them all, as an API server restart does.
        kube_cluster.local.restart_apiserver()

        # The binding also grants the pod signer's reads of pods, nodes and service accounts:
        # their watches may be reported first, each once it has been refused three times.
        def refused() -> str | None:
            status, body = process.readiness()
            return body if status == 503 and f"cannot watch {watch} (403 " in body else None

        body = wait_for(refused, timeout=60, what="/readyz to report the missing permission")
        assert "bind the ClusterRoles of deploy/base/rbac.yaml" in body
    finally:
        kubectl("apply", "-f", "-", input=json.dumps(saved))
    wait_for(lambda: process.readiness() == (200, "ok\n"), timeout=60, what="ready again")
    logged = [line for line in process.log().splitlines() if f"cannot watch {watch}" in line]
    assert len(logged) == 1, logged


CAN: list[tuple[str, ...]] = [
    ("get", "mtlscertificates.mtls.dev"),
    ("list", "mtlscertificates.mtls.dev"),
    ("watch", "mtlscertificates.mtls.dev"),
    ("patch", "mtlscertificates.mtls.dev", "--subresource=status"),
    ("get", "secrets"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("patch", "secrets"),
    ("create", "events"),
    # The CAs' revocation records (docs/revocation.md).
    *((verb, "configmaps") for verb in ("get", "list", "watch", "create", "patch")),
    *(
        (verb, f"{plural}.apps")
        for plural in ("deployments", "statefulsets", "daemonsets")
        for verb in ("get", "list", "watch", "patch")
    ),
]
CANNOT: list[tuple[str, ...]] = [
    ("delete", "secrets"),
    ("update", "secrets"),
    ("deletecollection", "secrets"),
    ("update", "configmaps"),
    ("create", "pods"),
    ("delete", "pods"),
    ("patch", "pods"),
    ("create", "pods", "--subresource=exec"),
    ("create", "mtlscertificates.mtls.dev"),
    ("patch", "mtlscertificates.mtls.dev"),
    ("update", "mtlscertificates.mtls.dev"),
    ("delete", "mtlscertificates.mtls.dev"),
    ("update", "mtlscertificates.mtls.dev", "--subresource=status"),
    ("patch", "events"),
    ("create", "serviceaccounts", "--subresource=token"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    # Workloads are rolled by a patch of their pod template, and by nothing else.
    *(
        (verb, f"{plural}.apps")
        for plural in ("deployments", "statefulsets", "daemonsets")
        for verb in ("create", "update", "delete", "deletecollection")
    ),
    ("patch", "deployments.apps", "--subresource=scale"),
    ("patch", "replicasets.apps"),
    ("delete", "replicasets.apps"),
    ("delete", "pods", "--subresource=eviction"),
    ("create", "pods", "--subresource=eviction"),
]
CLUSTER_CANNOT: list[tuple[str, ...]] = [
    ("patch", "nodes"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("update", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "namespaces"),
    ("impersonate", "serviceaccounts"),
    ("*", "*"),
]


def signer_access(kubectl: Kubectl, verb: str, signer: str) -> bool:
    """What the API server asks before a signer writes a PodCertificateRequest's
    status (verb sign) or a ClusterTrustBundle (verb attest): a resource name
    with slashes, which `kubectl auth can-i` cannot spell."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{OPERATOR_NAMESPACE}"],
            "resourceAttributes": {
                "group": "certificates.k8s.io",
                "resource": "signers",
                "verb": verb,
                "name": signer,
            },
        },
    }
    answer = kubectl("create", "-o", "json", "-f", "-", input=json.dumps(review))
    return bool(json.loads(answer.stdout)["status"].get("allowed"))


def test_the_operator_signs_and_attests_for_its_own_signers_only(
    installed: None, kubectl: Kubectl
) -> None:
    assert signer_access(kubectl, "sign", "mtls.dev/pod-identity")
    assert signer_access(kubectl, "attest", "mtls.dev/pod-identity")
    assert signer_access(kubectl, "attest", "mtls.dev/cluster-ca")
    assert not signer_access(kubectl, "sign", "mtls.dev/cluster-ca")
    for signer in ("kubernetes.io/kube-apiserver-client", "example.com/other", "mtls.dev/other"):
        for verb in ("sign", "attest", "approve"):
            assert not signer_access(kubectl, verb, signer), (verb, signer)


def test_the_service_account_can_do_what_the_operator_does_and_nothing_else(
    as_operator: Kubectl, namespace: str
) -> None:
    for args in CAN:
        assert can_i(as_operator, *args, "-n", namespace), f"cannot {' '.join(args)}"
    for args in CANNOT:
        assert not can_i(as_operator, *args, "-n", namespace), f"can {' '.join(args)}"
    for args in CLUSTER_CANNOT:
        assert not can_i(as_operator, *args, "--all-namespaces"), f"can {' '.join(args)}"
    for args in (
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "namespaces"),
        ("watch", "mtlspolicies.mtls.dev"),
        ("patch", "mtlspolicies.mtls.dev", "--subresource=status"),
        ("watch", "podcertificaterequests.certificates.k8s.io"),
        ("patch", "podcertificaterequests.certificates.k8s.io", "--subresource=status"),
        ("watch", "pods"),
        ("watch", "nodes"),
        ("watch", "serviceaccounts"),
        ("create", "clustertrustbundles.certificates.k8s.io"),
        ("update", "clustertrustbundles.certificates.k8s.io"),
        ("watch", "configmaps"),
    ):
        assert can_i(as_operator, *args), f"cannot {' '.join(args)}"
    for args in (
        ("create", "mtlspolicies.mtls.dev"),
        ("patch", "mtlspolicies.mtls.dev"),
        ("delete", "mtlspolicies.mtls.dev"),
        ("patch", "namespaces"),
        ("update", "podcertificaterequests.certificates.k8s.io"),
        ("create", "podcertificaterequests.certificates.k8s.io"),
        ("delete", "clustertrustbundles.certificates.k8s.io"),
        ("patch", "pods"),
        ("update", "nodes"),
        ("update", "serviceaccounts"),
    ):
        assert not can_i(as_operator, *args), f"can {' '.join(args)}"
    # Leader election: its own Lease, in its own namespace, only.
    lease = ("-n", OPERATOR_NAMESPACE)
    assert can_i(as_operator, "create", "leases.coordination.k8s.io", *lease)
    assert can_i(as_operator, "get", f"leases.coordination.k8s.io/{LEASE}", *lease)
    assert can_i(as_operator, "update", f"leases.coordination.k8s.io/{LEASE}", *lease)
    assert not can_i(as_operator, "update", "leases.coordination.k8s.io/someone-else", *lease)
    assert not can_i(as_operator, "delete", f"leases.coordination.k8s.io/{LEASE}", *lease)
    assert not can_i(as_operator, "create", "leases.coordination.k8s.io", "-n", namespace)


# --- deploy/overlays/namespaced -------------------------------------------------------------


def namespaced_overlay_for(kubectl: Kubectl, served: str) -> list[dict[str, Any]]:
    """The overlay's render, serving `served` instead of its example namespaces."""
    rendered = kubectl("kustomize", str(NAMESPACED_OVERLAY)).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    examples = {"shop", "demo"}
    result = []
    for obj in objects:
        metadata = obj["metadata"]
        if obj["kind"] == "RoleBinding" and metadata.get("namespace") in examples:
            if metadata["namespace"] == "shop":
                metadata["namespace"] = served
                result.append(obj)
            continue
        if obj["kind"] == "Deployment":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            args = container["args"]
            assert args[:5] == ["run", "--namespace", "shop", "--namespace", "demo"], args
            container["args"] = ["run", "--namespace", served, *args[5:]]
        result.append(obj)
    return result


@pytest.fixture
def namespaced_install(installed: None, kubectl: Kubectl, namespace: str) -> Iterator[None]:
    """The namespaced overlay in place of the cluster-wide base, serving `namespace`."""
    objects = namespaced_overlay_for(kubectl, namespace)
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    kubectl("apply", "--dry-run=server", "-f", "-", input=document)
    # As deploy/README.md says: apply does not delete the cluster-wide binding.
    kubectl("delete", "clusterrolebinding", "mtls-operator", "mtls-operator-workloads")
    kubectl("apply", "-f", "-", input=document)
    try:
        yield
    finally:
        for binding in ("mtls-operator", "mtls-operator-workloads"):
            kubectl("delete", "rolebinding", binding, "-n", namespace, "--ignore-not-found")
        kubectl(
            "delete", "rolebinding", "mtls-operator", "-n", OPERATOR_NAMESPACE, "--ignore-not-found"
        )
        kubectl("apply", "-k", str(DEPLOY))


# Listed first, so the overlay is in place before the operator starts.
@pytest.mark.usefixtures("namespaced_install")
def test_the_namespaced_overlay_is_enough_in_its_namespaces_and_nothing_outside(
    operator_as_service_account: OperatorProcess,
    as_operator: Kubectl,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    issue_the_examples(kube_api, kubectl, namespace)
    follow_a_workload(kubectl, namespace)
    assert_no_refusals(operator_as_service_account)
    for verb in ("get", "list", "watch", "create", "patch"):
        assert can_i(as_operator, verb, "secrets", "-n", namespace)
        assert can_i(as_operator, verb, "secrets", "-n", OPERATOR_NAMESPACE)
        assert not can_i(as_operator, verb, "secrets", "-n", "default")
        assert not can_i(as_operator, verb, "secrets", "-n", "kube-system")
        assert not can_i(as_operator, verb, "secrets", "--all-namespaces")
    for verb in ("list", "watch", "patch"):
        assert can_i(as_operator, verb, "deployments.apps", "-n", namespace)
        assert not can_i(as_operator, verb, "deployments.apps", "-n", "default")
        assert not can_i(as_operator, verb, "deployments.apps", "-n", OPERATOR_NAMESPACE)
        assert not can_i(as_operator, verb, "deployments.apps", "--all-namespaces")
    assert not can_i(as_operator, "list", "mtlscertificates.mtls.dev", "--all-namespaces")
    assert not can_i(as_operator, "create", "events", "-n", "default")
