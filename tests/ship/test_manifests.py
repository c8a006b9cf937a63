"""The Kubernetes manifests we ship, rendered by the kustomize in kubectl v1.37 as users render
them: deploy/ (the operator), its namespaced overlay, and the examples. The RBAC is checked
rule by rule against the calls the operator makes; a real API server checks the rest
(tests/e2e/test_deploy.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from gitops_checks import argocd_health
from ship.manifests import Object, Render, find, of_kind
from support.paths import REPO_ROOT

NAMESPACE = "mtls-operator"
IMAGE = "ghcr.io/mtls-operator/mtls-operator:0.1.0"
POD_LABELS = {
    "app.kubernetes.io/name": "mtls-operator",
    "app.kubernetes.io/component": "controller",
}
SERVICE_ACCOUNT = {"kind": "ServiceAccount", "name": "mtls-operator", "namespace": NAMESPACE}

# (apiGroup, resource, resourceNames) -> verbs: everything the operator may do, nothing more.
OPERATOR_RULES = {
    ("mtls.dev", "mtlscertificates", ()): {"get", "list", "watch"},
    ("mtls.dev", "mtlscertificates/status", ()): {"patch"},
    ("", "secrets", ()): {"get", "list", "watch", "create", "patch"},
    ("", "events", ()): {"create"},
    # Each CA's revocations record; never deleted.
    ("", "configmaps", ()): {"get", "list", "watch", "create", "patch"},
}
POLICY_RULES = {
    ("mtls.dev", "mtlspolicies", ()): {"get", "list", "watch"},
    ("mtls.dev", "mtlspolicies/status", ()): {"patch"},
}
POD_SIGNER_RULES = {
    ("certificates.k8s.io", "podcertificaterequests", ()): {"get", "list", "watch"},
    ("certificates.k8s.io", "podcertificaterequests/status", ()): {"patch"},
    ("certificates.k8s.io", "signers", ("mtls.dev/pod-identity",)): {"sign"},
    ("", "pods", ()): {"get", "list", "watch"},
    ("", "nodes", ()): {"get", "list", "watch"},
    ("", "serviceaccounts", ()): {"get", "list", "watch"},
}
TRUST_BUNDLE_RULES = {
    ("certificates.k8s.io", "clustertrustbundles", ()): {
        "get",
        "list",
        "watch",
        "create",
        "update",
    },
    ("certificates.k8s.io", "signers", ("mtls.dev/cluster-ca", "mtls.dev/pod-identity")): {
        "attest"
    },
}
TRUST_BUNDLE_CONFIGMAP_RULES = {
    ("", "configmaps", ()): {"list", "watch", "create", "patch", "delete"},
}
# Workloads that follow reloads: read to find them, patched to roll them; no update, no
# delete, nothing on pods.
WORKLOAD_RULES = {
    ("apps", resource, ()): {"get", "list", "watch", "patch"}
    for resource in ("deployments", "statefulsets", "daemonsets")
}
# The roles bound to the operator's ServiceAccount (the others are for people).
OPERATOR_ROLES = {
    "mtls-operator",
    "mtls-operator-discovery",
    "mtls-operator-policies",
    "mtls-operator-pod-signer",
    "mtls-operator-trust-bundles",
    "mtls-operator-trust-bundle-configmaps",
    "mtls-operator-workloads",
    "mtls-operator-leader-election",
}
# Updates and deletes the operator makes, of its own objects only: renewing its
# Lease, replacing its ClusterTrustBundles, removing its stale ConfigMaps.
OWN_OBJECT_VERBS = {
    ("leases", ("mtls-operator",)): {"update"},
    ("clustertrustbundles", ()): {"update"},
    ("configmaps", ()): {"delete"},
}
DISCOVERY_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions", ()): {"list", "watch"},
    ("", "namespaces", ()): {"list", "watch"},
}
LEADER_ELECTION_RULES = {
    ("coordination.k8s.io", "leases", ()): {"create"},
    ("coordination.k8s.io", "leases", ("mtls-operator",)): {"get", "update"},
}


def rules_of(role: Object) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    rules: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, tuple(rule.get("resourceNames") or ()))
                rules.setdefault(key, set()).update(rule["verbs"])
    return rules


def _squeezed(value: Any) -> Any:
    """`value` with every run of whitespace in its strings made one space."""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, dict):
        return {key: _squeezed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_squeezed(item) for item in value]
    return value


def operator_container(objects: list[Object]) -> Object:
    pod = find(objects, "Deployment", "mtls-operator")["spec"]["template"]["spec"]
    containers: list[Object] = pod["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


# --- deploy/ ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deploy(render: Render) -> list[Object]:
    return render("deploy")


def test_deploy_renders_everything_an_install_needs(deploy: list[Object]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in deploy)
    assert kinds == sorted(
        [
            ("Namespace", NAMESPACE),
            ("CustomResourceDefinition", "mtlscertificates.mtls.dev"),
            ("CustomResourceDefinition", "mtlspolicies.mtls.dev"),
            ("ServiceAccount", "mtls-operator"),
            ("ClusterRole", "mtls-operator"),
            ("ClusterRole", "mtls-operator-discovery"),
            ("ClusterRole", "mtls-operator-policies"),
            ("ClusterRole", "mtls-operator-pod-signer"),
            ("ClusterRole", "mtls-operator-trust-bundles"),
            ("ClusterRole", "mtls-operator-trust-bundle-configmaps"),
            ("ClusterRole", "mtls-operator-workloads"),
            ("ClusterRole", "mtls-operator-edit"),
            ("ClusterRole", "mtls-operator-view"),
            ("ClusterRole", "mtls-operator-policy-reader"),
            ("ClusterRoleBinding", "mtls-operator"),
            ("ClusterRoleBinding", "mtls-operator-discovery"),
            ("ClusterRoleBinding", "mtls-operator-policies"),
            ("ClusterRoleBinding", "mtls-operator-pod-signer"),
            ("ClusterRoleBinding", "mtls-operator-trust-bundles"),
            ("ClusterRoleBinding", "mtls-operator-trust-bundle-configmaps"),
            ("ClusterRoleBinding", "mtls-operator-workloads"),
            ("ClusterRoleBinding", "mtls-operator-policy-reader"),
            ("Role", "mtls-operator-leader-election"),
            ("RoleBinding", "mtls-operator-leader-election"),
            ("Deployment", "mtls-operator"),
            ("Service", "mtls-operator-metrics"),
            ("PodDisruptionBudget", "mtls-operator"),
            ("NetworkPolicy", "mtls-operator"),
        ]
    )
    # The CRD is the file the tests install, unchanged but for the common labels (and for
    # whitespace: kustomize re-folds a folded CEL rule with a more-indented line, which CEL
    # does not care about).
    for plural in ("mtlscertificates", "mtlspolicies"):
        crd = find(deploy, "CustomResourceDefinition", f"{plural}.mtls.dev")
        shipped = yaml.safe_load((REPO_ROOT / "crds" / f"{plural}.yaml").read_text())
        assert _squeezed(crd["spec"]) == _squeezed(shipped["spec"])
    cluster_scoped = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
    for obj in deploy:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]
    # Kustomize orders the namespace and the CRD before what needs them.
    assert [o["kind"] for o in deploy[:3]] == [
        "Namespace",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
    ]


def test_the_deployment_runs_the_operator_cluster_wide_with_two_replicas(
    deploy: list[Object],
) -> None:
    deployment = find(deploy, "Deployment", "mtls-operator")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == POD_LABELS
    pod = deployment["spec"]["template"]
    assert POD_LABELS.items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["serviceAccountName"] == "mtls-operator"
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 15
    spread = pod["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == POD_LABELS for c in spread)
    container = operator_container(deploy)
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == [
        "run",
        "--all-namespaces",
        "--bootstrap-ca",
        "--log-format",
        "json",
    ]
    assert container["env"] == [
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}
    ]


def test_the_deployment_has_every_security_setting(deploy: list[Object]) -> None:
    pod = find(deploy, "Deployment", "mtls-operator")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod.get("hostNetwork") is not True
    assert pod.get("hostPID") is not True
    assert pod.get("hostIPC") is not True
    container = operator_container(deploy)
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["runAsGroup"] == 65532
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # The only writable place: an emptyDir at /tmp.
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]


def test_the_deployment_has_resources_and_probes_on_the_metrics_port(
    deploy: list[Object],
) -> None:
    container = operator_container(deploy)
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": "1", "memory": "384Mi"},
    }
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    service = find(deploy, "Service", "mtls-operator-metrics")
    assert service["spec"]["selector"] == POD_LABELS
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "8080"


def test_every_checkov_skip_carries_its_reason(deploy: list[Object]) -> None:
    for obj in deploy:
        for key, value in (obj["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert check.startswith("CKV"), value
                assert len(reason.split()) >= 8, f"{check} is skipped without a reason"


def test_rbac_grants_exactly_what_the_operator_calls(deploy: list[Object]) -> None:
    assert rules_of(find(deploy, "ClusterRole", "mtls-operator")) == OPERATOR_RULES
    assert rules_of(find(deploy, "ClusterRole", "mtls-operator-discovery")) == DISCOVERY_RULES
    assert rules_of(find(deploy, "ClusterRole", "mtls-operator-policies")) == POLICY_RULES
    assert rules_of(find(deploy, "ClusterRole", "mtls-operator-pod-signer")) == POD_SIGNER_RULES
    trust = find(deploy, "ClusterRole", "mtls-operator-trust-bundles")
    assert rules_of(trust) == TRUST_BUNDLE_RULES
    configmaps = find(deploy, "ClusterRole", "mtls-operator-trust-bundle-configmaps")
    assert rules_of(configmaps) == TRUST_BUNDLE_CONFIGMAP_RULES
    assert rules_of(find(deploy, "ClusterRole", "mtls-operator-workloads")) == WORKLOAD_RULES
    leader = find(deploy, "Role", "mtls-operator-leader-election")
    assert leader["metadata"]["namespace"] == NAMESPACE
    assert rules_of(leader) == LEADER_ELECTION_RULES
    for kind, name, role_kind in (
        ("ClusterRoleBinding", "mtls-operator", "ClusterRole"),
        ("ClusterRoleBinding", "mtls-operator-discovery", "ClusterRole"),
        ("ClusterRoleBinding", "mtls-operator-policies", "ClusterRole"),
        ("ClusterRoleBinding", "mtls-operator-pod-signer", "ClusterRole"),
        ("ClusterRoleBinding", "mtls-operator-trust-bundles", "ClusterRole"),
        ("ClusterRoleBinding", "mtls-operator-trust-bundle-configmaps", "ClusterRole"),
        ("ClusterRoleBinding", "mtls-operator-workloads", "ClusterRole"),
        ("RoleBinding", "mtls-operator-leader-election", "Role"),
    ):
        binding = find(deploy, kind, name)
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": name,
        }
        assert binding["subjects"] == [SERVICE_ACCOUNT]


DANGEROUS_VERBS = {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"}


@pytest.mark.parametrize("directory", ["deploy", "deploy/overlays/namespaced"])
def test_rbac_has_no_wildcards_and_no_dangerous_verbs(render: Render, directory: str) -> None:
    objects = render(directory)
    roles = of_kind(objects, "ClusterRole") + of_kind(objects, "Role")
    for role in [r for r in roles if r["metadata"]["name"] in OPERATOR_ROLES]:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']}: {rule}"
            assert rule.get("nonResourceURLs") is None
            dangerous = DANGEROUS_VERBS & set(rule["verbs"])
            for resource in rule["resources"]:
                dangerous -= OWN_OBJECT_VERBS.get(
                    (resource, tuple(rule.get("resourceNames") or ())), set()
                )
            assert not dangerous, f"{role['metadata']['name']}: {rule}"


def test_people_manage_certificates_through_the_aggregated_roles(deploy: list[Object]) -> None:
    edit = find(deploy, "ClusterRole", "mtls-operator-edit")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert rules_of(edit) == {
        ("mtls.dev", "mtlscertificates", ()): {
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection",
        }
    }
    view = find(deploy, "ClusterRole", "mtls-operator-view")
    assert view["metadata"]["labels"] == {
        "rbac.authorization.k8s.io/aggregate-to-view": "true",
        "app.kubernetes.io/name": "mtls-operator",
        "app.kubernetes.io/part-of": "mtls-operator",
        "app.kubernetes.io/version": "0.1.0",
    }
    # Nobody but cluster administrators writes policies: no role for people grants it.
    for role in of_kind(deploy, "ClusterRole"):
        if role["metadata"]["name"] in OPERATOR_ROLES:
            continue
        for (group, resource, _), verbs in rules_of(role).items():
            if (group, resource) == ("mtls.dev", "mtlspolicies"):
                assert verbs <= {"get", "list", "watch"}, role["metadata"]["name"]


# --- deploy/overlays/namespaced -------------------------------------------------------------


def test_the_namespaced_overlay_grants_secrets_only_in_the_served_namespaces(
    render: Render,
) -> None:
    objects = render("deploy/overlays/namespaced")
    # No cluster-wide binding of the role that reads Secrets; what stays cluster-wide is
    # kopf's discovery, the cluster-scoped policies, and everyone's read of policies.
    bindings = of_kind(objects, "ClusterRoleBinding")
    assert sorted(b["metadata"]["name"] for b in bindings) == [
        "mtls-operator-discovery",
        "mtls-operator-pod-signer",
        "mtls-operator-policies",
        "mtls-operator-policy-reader",
        "mtls-operator-trust-bundle-configmaps",
        "mtls-operator-trust-bundles",
    ]
    args = operator_container(objects)["args"]
    assert "--all-namespaces" not in args
    served = {args[i + 1] for i, arg in enumerate(args) if arg in ("--namespace", "-n")}
    assert served == {"shop", "demo"}
    role_bindings = {
        b["metadata"]["namespace"]
        for b in of_kind(objects, "RoleBinding")
        if b["roleRef"]["name"] == "mtls-operator"
    }
    # Every served namespace, and the operator's own for the cluster CA Secret.
    assert role_bindings == served | {NAMESPACE}
    # Workloads in the served namespaces only.
    workload_bindings = {
        b["metadata"]["namespace"]
        for b in of_kind(objects, "RoleBinding")
        if b["roleRef"]["name"] == "mtls-operator-workloads"
    }
    assert workload_bindings == served
    for binding in of_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [SERVICE_ACCOUNT]
    # Everything else is the base, unchanged.
    assert rules_of(find(objects, "ClusterRole", "mtls-operator")) == OPERATOR_RULES
    assert rules_of(find(objects, "ClusterRole", "mtls-operator-workloads")) == WORKLOAD_RULES
    assert find(objects, "Deployment", "mtls-operator")["spec"]["replicas"] == 2


# --- examples -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("examples/deployment-server.yaml", "payments-tls"),
        ("examples/deployment-client.yaml", "checkout-tls"),
    ],
)
def test_example_deployments_mount_the_issued_secret_read_only(path: str, secret: str) -> None:
    objects = [doc for doc in yaml.safe_load_all((REPO_ROOT / path).read_text()) if doc]
    (deployment,) = of_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/etc/tls"]
    assert mount["readOnly"] is True
    # A subPath mount would never see a renewed certificate.
    assert "subPath" not in mount
    volume = volumes[mount["name"]]["secret"]
    assert volume["secretName"] == secret
    assert volume["defaultMode"] == 0o400
    # A non-root process reads a 0400 file through fsGroup (the kubelet adds group read).
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False


def test_the_example_client_calls_a_name_in_the_example_server_certificate() -> None:
    server = yaml.safe_load((REPO_ROOT / "examples/server-certificate.yaml").read_text())
    client = yaml.safe_load_all((REPO_ROOT / "examples/deployment-client.yaml").read_text())
    (deployment,) = [d for d in client if d and d["kind"] == "Deployment"]
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    host = env["PAYMENTS_URL"].removeprefix("https://").split(":")[0]
    assert host in server["spec"]["dnsNames"]


def test_the_gitops_overlay_renders_namespaced_certificates(render: Render) -> None:
    objects = render("examples/gitops/shop/overlays/prod")
    assert find(objects, "Namespace", "shop")
    payments = find(objects, "MtlsCertificate", "payments", namespace="shop")
    assert payments["spec"]["dnsNames"] == [
        "payments.shop.svc",
        "payments.shop.svc.cluster.local",
    ]
    assert payments["spec"]["commonName"] == "payments.shop.svc"
    checkout = find(objects, "MtlsCertificate", "checkout", namespace="shop")
    assert checkout["spec"]["uris"] == ["spiffe://cluster.local/ns/shop/sa/checkout"]
    for certificate in (payments, checkout):
        assert certificate["spec"]["duration"] == "720h"
        assert certificate["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-1"


# --- the Argo CD health check ---------------------------------------------------------------

ARGOCD = REPO_ROOT / "examples" / "gitops" / "argocd"
HEALTH_KEY = "resource.customizations.health.mtls.dev_MtlsCertificate"


def test_the_argocd_cm_example_holds_the_health_check_verbatim() -> None:
    config_map = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": {"app.kubernetes.io/name": "argocd-cm", "app.kubernetes.io/part-of": "argocd"},
    }
    assert config_map["data"] == {HEALTH_KEY: (ARGOCD / "health-mtlscertificate.lua").read_text()}


def _condition(kind: str, status: str, reason: str, generation: int = 2) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": f"{reason} message",
        "observedGeneration": generation,
    }


def _certificate(
    *conditions: dict[str, Any], generation: int = 2, observed: int | None = 2
) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "payments", "generation": generation}}
    if conditions or observed is not None:
        body["status"] = {"conditions": list(conditions)}
        if observed is not None:
            body["status"]["observedGeneration"] = observed
    return body


HEALTH_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "new",
        {"metadata": {"name": "payments", "generation": 1}},
        "Progressing",
        "Waiting for the operator",
    ),
    (
        "status without conditions",
        {"metadata": {"generation": 1}, "status": {}},
        "Progressing",
        "Waiting",
    ),
    (
        "issued",
        _certificate(_condition("Ready", "True", "Issued")),
        "Healthy",
        "Issued: Issued message",
    ),
    ("renewed", _certificate(_condition("Ready", "True", "Renewed")), "Healthy", "Renewed"),
    (
        "spec edited, not processed yet",
        _certificate(_condition("Ready", "True", "Issued"), generation=3, observed=2),
        "Progressing",
        "generation 3",
    ),
    (
        "invalid spec",
        _certificate(
            _condition("Ready", "False", "InvalidSpec"),
            _condition("Stalled", "True", "InvalidSpec"),
        ),
        "Degraded",
        "InvalidSpec: InvalidSpec message",
    ),
    (
        "secret conflict",
        _certificate(
            _condition("Ready", "False", "SecretConflict"),
            _condition("Stalled", "True", "SecretConflict"),
        ),
        "Degraded",
        "SecretConflict",
    ),
    (
        "CA not there yet",
        _certificate(_condition("Ready", "False", "CANotFound")),
        "Progressing",
        "CANotFound",
    ),
    (
        "retried failure",
        _certificate(_condition("Ready", "False", "IssuanceFailed")),
        "Progressing",
        "IssuanceFailed",
    ),
    ("expired", _certificate(_condition("Ready", "False", "Expired")), "Degraded", "Expired"),
    (
        "stalled cleared",
        _certificate(
            _condition("Ready", "True", "Reissued"), _condition("Stalled", "False", "Reissued")
        ),
        "Healthy",
        "Reissued",
    ),
    (
        "no Ready condition",
        _certificate(_condition("Other", "True", "X")),
        "Progressing",
        "Ready condition",
    ),
    (
        "no reason or message",
        _certificate({"type": "Ready", "status": "False"}),
        "Progressing",
        ": ",
    ),
]


def test_the_argocd_health_check() -> None:
    outcomes = argocd_health([case for _, case, _, _ in HEALTH_CASES])
    for (name, _, status, message), outcome in zip(HEALTH_CASES, outcomes, strict=True):
        assert outcome["status"] == status, f"{name}: {outcome}"
        assert message in outcome["message"], f"{name}: {outcome}"


# --- deploy/overlays/local ------------------------------------------------------------------


def _key(item: Object) -> tuple[str, str, str]:
    return (item["kind"], item["metadata"].get("namespace", ""), item["metadata"]["name"])


def test_the_local_overlay_changes_only_the_image_the_token_and_the_bundles(
    render: Render,
) -> None:
    """The overlay the tests and the demo install with differs from deploy/ in exactly what
    docs/local-node.md lists: the image the node imported, a token the kubelet refreshes
    within a test run, and trust bundle ConfigMaps in the namespaces labelled for them."""
    base = {_key(item): item for item in render("deploy")}
    local = {_key(item): item for item in render("deploy/overlays/local")}
    assert base.keys() == local.keys()
    deployment = ("Deployment", "mtls-operator", "mtls-operator")
    assert {k: v for k, v in local.items() if k != deployment} == {
        k: v for k, v in base.items() if k != deployment
    }
    pod = local[deployment]["spec"]["template"]["spec"]
    expected = copy.deepcopy(base[deployment])["spec"]["template"]["spec"]
    [container] = expected["containers"]
    container.update(image="localhost/mtls-operator:dev", imagePullPolicy="Never")
    container["args"].append("--trust-bundle-namespace-selector=mtls.dev/trust=true")
    container["volumeMounts"].append(
        {
            "name": "kube-api-access",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": True,
        }
    )
    expected["automountServiceAccountToken"] = False
    [token_volume] = [v for v in pod["volumes"] if v["name"] == "kube-api-access"]
    expected["volumes"].append(token_volume)
    assert pod == expected
    sources = token_volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}


@pytest.mark.parametrize(
    ("example", "overlay", "namespace"),
    [
        ("examples", "deploy/overlays/local/examples", None),
        ("examples/pod-identity", "deploy/overlays/local/pod-identity", "shop"),
    ],
)
def test_the_local_examples_change_only_the_workload_image(
    render: Render, example: str, overlay: str, namespace: str | None
) -> None:
    local = {_key(item): item for item in render(overlay)}
    expected = {}
    for item in render(example):
        item = copy.deepcopy(item)  # noqa: PLW2901 - the copy is what is compared
        if namespace is not None:
            item["metadata"]["namespace"] = namespace
        if item["kind"] == "Deployment":
            [container] = item["spec"]["template"]["spec"]["containers"]
            assert container["image"] == "python:3.11-slim"
            container.update(image="localhost/mtls-workload:dev", imagePullPolicy="Never")
        expected[_key(item)] = item
    assert local == expected
