"""The Helm chart, rendered by the real helm (v3.22, hack/tools): lint-clean, the same objects
as deploy/ and its overlays for the matching values, its copies of the repository's files
current, every value reaching the operator's flags as the operator itself parses them, and
bad values refused by the schema with the value's path. Installing it: tests/e2e/test_helm.py."""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtls_operator.app import OperatorConfig
from mtls_operator.authorities.store import CARef
from mtls_operator.cli import settings as run_settings
from mtls_operator.policy.identity import IdentityMode

from ship.manifests import Object, kustomize
from support.chart import (
    CHART,
    KEEP,
    Helm,
    by_key,
    documents,
    helm_labels,
    key,
    without_helm_additions,
    without_namespace,
)
from support.paths import REPO_ROOT

SYNC_SCRIPT = "hack/sync-chart-files.sh"
NAMESPACED = {"watchNamespaces": ["shop", "demo"]}
MONITORING = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    }
}
# Every value away from its default at once.
EVERYTHING = {
    "image": {"tag": "0.1.1", "digest": "sha256:" + "ab" * 32, "pullPolicy": "Always"},
    "imagePullSecrets": ["registry"],
    "replicas": 3,
    "resources": {
        "requests": {"cpu": "200m", "memory": "256Mi"},
        "limits": {"cpu": "2", "memory": "1Gi"},
    },
    "leaderElection": {"leaseName": "mtls-lease"},
    "bootstrapCA": False,
    "clusterCASecret": {"namespace": "pki", "name": "root"},
    "watchNamespaces": ["shop"],
    "identityPolicy": {"mode": "open", "clusterDomain": "corp.example", "trustDomain": "corp"},
    "podSigner": {"signerName": "example.com/pods"},
    "trustBundles": {"namespaceSelector": "mtls.dev/bundle=true"},
    "workloadRolls": {"enabled": True, "rate": 0.2, "burst": 2, "window": "30s"},
    "crl": {
        "validity": "72h",
        "refreshBefore": "24h",
        "url": "http://mtls-operator-metrics.mtls-operator.svc:9090",
    },
    "metrics": {
        "port": 9090,
        "serviceMonitor": {"enabled": True, "interval": "1m", "labels": {"team": "pki"}},
        "prometheusRule": {"enabled": True, "labels": {"prometheus": "main"}},
        "dashboard": {"enabled": True},
    },
    "logFormat": "text",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "pki"}],
    "affinity": {"nodeAffinity": {}},
    "podAnnotations": {"example.com/owner": "pki"},
    "priorityClassName": "pki-critical",
    "crds": {"install": True, "keep": False},
}


@pytest.fixture
def helm(tmp_path: Path) -> Helm:
    return Helm(tmp_path / "helm-home")


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / f"values-{len(list(tmp_path.glob('values-*')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(helm: Helm, tmp_path: Path, values: dict[str, Any] | None = None) -> list[Object]:
    args = ["-f", values_file(tmp_path, values)] if values is not None else []
    return documents(helm.template(*args))


def find(objects: list[Object], kind: str, name: str, namespace: str = "") -> Object:
    return by_key(objects)[(kind, namespace, name)]


def assert_same_objects(chart: list[Object], kustomized: list[Object]) -> None:
    ours, theirs = by_key(chart), by_key(kustomized)
    assert sorted(ours) == sorted(theirs)
    for k in sorted(ours):
        if ours[k] != theirs[k]:
            diff = difflib.unified_diff(
                yaml.safe_dump(theirs[k]).splitlines(),
                yaml.safe_dump(ours[k]).splitlines(),
                "kustomize",
                "helm",
                lineterm="",
            )
            pytest.fail(f"{k} differs:\n" + "\n".join(diff))


# --- lint ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [None, NAMESPACED, MONITORING, EVERYTHING],
    ids=["defaults", "namespaced", "monitoring", "everything"],
)
def test_helm_lint_strict_is_clean(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> None:
    args = ["-f", values_file(tmp_path, values)] if values is not None else []
    linted = helm("lint", "--strict", str(CHART), "--kube-version", "1.37.2", *args)
    # The only finding helm has is an INFO (no icon: the project has none).
    findings = [line for line in linted.stdout.splitlines() if line.startswith("[")]
    assert findings == ["[INFO] Chart.yaml: icon is recommended"], linted.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in linted.stdout


# --- one source of truth: the chart renders what deploy/ does ---------------------------------


def test_the_default_render_is_deploy(helm: Helm, tmp_path: Path) -> None:
    assert_same_objects(
        without_helm_additions(render(helm, tmp_path)), without_namespace(kustomize("deploy"))
    )


def test_watched_namespaces_render_the_namespaced_overlay(helm: Helm, tmp_path: Path) -> None:
    assert_same_objects(
        without_helm_additions(render(helm, tmp_path, NAMESPACED)),
        without_namespace(kustomize("deploy/overlays/namespaced")),
    )


def test_monitoring_values_render_the_monitoring_overlay(helm: Helm, tmp_path: Path) -> None:
    assert_same_objects(
        without_helm_additions(render(helm, tmp_path, MONITORING)),
        without_namespace(kustomize("deploy/overlays/monitoring")),
    )


def test_the_normalisation_catches_a_change(helm: Helm, tmp_path: Path) -> None:
    """The comparison above fails on a difference in a spec, and on a missing Helm label."""
    chart = without_helm_additions(render(helm, tmp_path))
    find(chart, "Deployment", "mtls-operator", "mtls-operator")["spec"]["replicas"] = 3
    with pytest.raises(pytest.fail.Exception, match="Deployment"):
        assert_same_objects(chart, without_namespace(kustomize("deploy")))
    unlabelled = render(helm, tmp_path)
    del unlabelled[0]["metadata"]["labels"]["app.kubernetes.io/instance"]
    with pytest.raises(AssertionError, match=r"app\.kubernetes\.io/instance"):
        without_helm_additions(unlabelled)


def test_the_chart_files_are_copies_of_the_repository_files() -> None:
    copies = {
        CHART / "files" / "crds" / crd.name: crd
        for crd in sorted((REPO_ROOT / "crds").glob("*.yaml"))
        if crd.name != "kustomization.yaml"
    }
    for name in ("rules.yaml", "dashboard.json"):
        copies[CHART / "files" / "monitoring" / name] = REPO_ROOT / "deploy" / "monitoring" / name
    present = {p for p in (CHART / "files").rglob("*") if p.is_file()}
    hint = f"run {SYNC_SCRIPT}"
    assert present == set(copies), f"charts/mtls-operator/files is out of date: {hint}"
    for copy, original in copies.items():
        assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}: {hint}"


def test_the_chart_versions() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "mtls-operator"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == project["version"]
    # certificates.k8s.io/v1 PodCertificateRequests and ClusterTrustBundles.
    assert chart["kubeVersion"] == ">=1.37.0-0"


def test_an_older_kubernetes_is_refused(helm: Helm) -> None:
    refused = helm("template", "x", str(CHART), "--kube-version", "1.36.4", check=False)
    assert refused.returncode != 0
    assert "chart requires kubeVersion: >=1.37.0-0" in refused.stderr


# --- values ----------------------------------------------------------------------------------


def operator_config(objects: list[Object]) -> OperatorConfig:
    """The operator's configuration from the rendered arguments, parsed by the operator's own
    command line (so a flag the chart spells wrong fails here)."""
    container = find(objects, "Deployment", "mtls-operator", "mtls-operator")["spec"]["template"][
        "spec"
    ]["containers"][0]
    args = container["args"]
    assert args[0] == "run"
    parser = argparse.ArgumentParser(exit_on_error=False)
    run_settings.add_arguments(parser)
    parsed = parser.parse_args(args[1:])
    return run_settings.config_from_arguments(parsed)


def test_default_values_are_the_operators_defaults_plus_deploys_flags(
    helm: Helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "mtls-operator")
    config = operator_config(render(helm, tmp_path))
    assert config.namespaces == ()
    assert config.bootstrap_ca
    assert config.cluster_ca == CARef("mtls-operator", "mtls-operator-ca")
    assert config.leader_election
    assert config.lease_name == "mtls-operator"
    assert config.identity.mode is IdentityMode.NAMESPACE
    assert config.pod_signer
    assert config.pod_signer_name == "mtls.dev/pod-identity"
    assert config.trust_bundle_namespaces is None
    assert config.workload_rolls
    assert config.workload_roll_rate == OperatorConfig.workload_roll_rate
    assert config.workload_roll_burst == OperatorConfig.workload_roll_burst
    assert config.workload_roll_window == OperatorConfig.workload_roll_window
    assert config.crl == OperatorConfig.crl
    assert config.crl_url is None
    assert config.metrics_port == 8080


def test_every_value_reaches_the_operator_and_its_objects(
    helm: Helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "mtls-operator")
    objects = render(helm, tmp_path, EVERYTHING)
    config = operator_config(objects)
    assert config.namespaces == ("shop",)
    assert not config.bootstrap_ca
    assert config.cluster_ca == CARef("pki", "root")
    assert config.lease_name == "mtls-lease"
    assert config.identity.mode is IdentityMode.OPEN
    assert config.identity.cluster_domain == "corp.example"
    assert config.identity.trust_domain == "corp"
    assert config.pod_signer_name == "example.com/pods"
    assert config.trust_bundle_namespaces is not None
    assert config.workload_roll_rate == 0.2
    assert config.workload_roll_burst == 2
    assert config.workload_roll_window == datetime.timedelta(seconds=30)
    assert config.crl.validity == datetime.timedelta(hours=72)
    assert config.crl.refresh_before == datetime.timedelta(hours=24)
    assert config.crl_url == "http://mtls-operator-metrics.mtls-operator.svc:9090"
    assert config.metrics_port == 9090

    deployment = find(objects, "Deployment", "mtls-operator", "mtls-operator")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "ghcr.io/mtls-operator/mtls-operator:0.1.1@sha256:" + "ab" * 32
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == EVERYTHING["resources"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]
    assert container["args"][container["args"].index("--log-format") + 1] == "text"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["nodeSelector"] == EVERYTHING["nodeSelector"]
    assert pod["tolerations"] == EVERYTHING["tolerations"]
    assert pod["affinity"] == EVERYTHING["affinity"]
    assert pod["priorityClassName"] == "pki-critical"
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/default-container": "operator",
        "example.com/owner": "pki",
    }
    # Secret access in the served namespace, the operator's and the CA's, nowhere else.
    bindings = {key(o) for o in objects if o["kind"] == "RoleBinding"}
    assert bindings == {
        ("RoleBinding", ns, name)
        for ns, name in [
            ("shop", "mtls-operator"),
            ("mtls-operator", "mtls-operator"),
            ("pki", "mtls-operator"),
            ("shop", "mtls-operator-workloads"),
            ("mtls-operator", "mtls-operator-leader-election"),
        ]
    }
    assert ("ClusterRoleBinding", "", "mtls-operator") not in by_key(objects)
    assert ("ClusterRoleBinding", "", "mtls-operator-workloads") not in by_key(objects)
    lease_role = find(objects, "Role", "mtls-operator-leader-election", "mtls-operator")
    assert lease_role["rules"][1]["resourceNames"] == ["mtls-lease"]
    signer_rules = find(objects, "ClusterRole", "mtls-operator-pod-signer")["rules"]
    assert {"resourceNames": ["example.com/pods"], "verbs": ["sign"]}.items() <= signer_rules[
        2
    ].items()
    attest = find(objects, "ClusterRole", "mtls-operator-trust-bundles")["rules"][1]
    assert attest["resourceNames"] == ["mtls.dev/cluster-ca", "example.com/pods"]
    service = find(objects, "Service", "mtls-operator-metrics", "mtls-operator")
    assert service["spec"]["ports"][0]["port"] == 9090
    assert service["metadata"]["annotations"]["prometheus.io/port"] == "9090"
    monitor = find(objects, "ServiceMonitor", "mtls-operator", "mtls-operator")
    assert monitor["metadata"]["labels"]["team"] == "pki"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "1m"}]
    rule = find(objects, "PrometheusRule", "mtls-operator", "mtls-operator")
    assert rule["metadata"]["labels"]["prometheus"] == "main"
    for crd in (o for o in objects if o["kind"] == "CustomResourceDefinition"):
        assert KEEP[0] not in (crd["metadata"].get("annotations") or {})


def test_switches_leave_out_what_they_switch_off(
    helm: Helm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "mtls-operator")
    objects = render(
        helm,
        tmp_path,
        {
            "leaderElection": {"enabled": False},
            "podSigner": {"enabled": False},
            "metrics": {"enabled": False},
            "crds": {"install": False},
            "workloadRolls": {"enabled": False},
            "replicas": 1,
        },
    )
    config = operator_config(objects)
    assert not config.leader_election
    assert not config.pod_signer
    assert not config.workload_rolls
    assert config.metrics_port == 0
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for gone in [
        ("CustomResourceDefinition", "mtlscertificates.mtls.dev"),
        ("CustomResourceDefinition", "mtlspolicies.mtls.dev"),
        ("Role", "mtls-operator-leader-election"),
        ("RoleBinding", "mtls-operator-leader-election"),
        ("ClusterRole", "mtls-operator-pod-signer"),
        ("ClusterRoleBinding", "mtls-operator-pod-signer"),
        ("ClusterRole", "mtls-operator-workloads"),
        ("ClusterRoleBinding", "mtls-operator-workloads"),
        ("Service", "mtls-operator-metrics"),
    ]:
        assert gone not in kinds
    attest = find(objects, "ClusterRole", "mtls-operator-trust-bundles")["rules"][1]
    assert attest["resourceNames"] == ["mtls.dev/cluster-ca"]
    container = find(objects, "Deployment", "mtls-operator", "mtls-operator")["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert not {"ports", "livenessProbe", "readinessProbe"} & set(container)
    policy = find(objects, "NetworkPolicy", "mtls-operator", "mtls-operator")
    assert policy["spec"]["ingress"] == []


# Values that are one map each, set as a whole (labels, Kubernetes resource requirements).
WHOLE_MAPS = ("resources", ".labels")


def leaf_paths(values: Any, prefix: str = "") -> set[str]:
    """`image.tag`, `crds.keep`, ...: every value a user sets."""
    if isinstance(values, dict) and values and not prefix.endswith(WHOLE_MAPS):
        paths: set[str] = set()
        for name, value in values.items():
            paths |= leaf_paths(value, f"{prefix}.{name}" if prefix else name)
        return paths
    return {prefix}


def test_every_value_is_documented_and_in_the_schema() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    assert leaf_paths(values) == documented
    for path in documented:
        node = schema
        for part in path.split("."):
            assert node.get("additionalProperties") is False, f"{path}: {part}'s parent is open"
            node = node["properties"][part]
    for path, above in lines_above(CHART / "values.yaml").items():
        if path in documented:
            assert above.lstrip().startswith("#"), f"values.yaml: {path} has no comment"


def lines_above(values_yaml: Path) -> dict[str, str]:
    """Each key's dotted path in a values file, and the line just above it."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    lines = values_yaml.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        found[".".join(name for _, name in stack)] = lines[number - 1] if number else ""
    return found


# --- the schema refuses bad values -----------------------------------------------------------

BAD_VALUES = [
    pytest.param({"replicas": 0}, "/replicas", id="replicas-0"),
    pytest.param({"replicas": "two"}, "/replicas", id="replicas-string"),
    pytest.param({"replicas": 1.5}, "/replicas", id="replicas-fraction"),
    pytest.param({"identityPolicy": {"mode": "closed"}}, "/identityPolicy/mode", id="identity"),
    pytest.param({"logFormat": "xml"}, "/logFormat", id="log-format"),
    pytest.param({"replica": 2}, "'replica' not allowed", id="unknown-top-level-key"),
    pytest.param({"image": {"tga": "1"}}, "'tga' not allowed", id="unknown-nested-key"),
    pytest.param({"watchNamespaces": ["Not_A_Label"]}, "/watchNamespaces/0", id="namespace"),
    pytest.param({"watchNamespaces": ["shop", "shop"]}, "/watchNamespaces", id="namespace-twice"),
    pytest.param({"watchNamespaces": "shop"}, "/watchNamespaces", id="namespaces-not-a-list"),
    pytest.param({"image": {"tag": 5}}, "/image/tag", id="tag-number"),
    pytest.param({"image": {"digest": "latest"}}, "/image/digest", id="digest"),
    pytest.param({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy", id="pull-policy"),
    pytest.param({"metrics": {"port": 70000}}, "/metrics/port", id="port"),
    pytest.param({"metrics": {"enabled": "yes"}}, "/metrics/enabled", id="metrics-enabled"),
    pytest.param({"crds": {"keep": "false"}}, "/crds/keep", id="crds-keep-string"),
    pytest.param(
        {"workloadRolls": {"enabled": "yes"}}, "/workloadRolls/enabled", id="workload-rolls"
    ),
    pytest.param({"workloadRolls": {"rate": 0}}, "/workloadRolls/rate", id="roll-rate"),
    pytest.param({"workloadRolls": {"burst": 0}}, "/workloadRolls/burst", id="roll-burst"),
    pytest.param({"workloadRolls": {"window": "5"}}, "/workloadRolls/window", id="roll-window"),
    pytest.param({"crl": {"validity": "7d"}}, "/crl/validity", id="crl-validity"),
    pytest.param({"crl": {"refreshBefore": "2"}}, "/crl/refreshBefore", id="crl-refresh-before"),
    pytest.param(
        {"crl": {"url": "https://mtls-operator-metrics.mtls-operator.svc:8080"}},
        "/crl/url",
        id="crl-url-https",
    ),
    pytest.param({"crl": {"url": "http://host/crl?x=1"}}, "/crl/url", id="crl-url-query"),
    pytest.param({"podSigner": {"signerName": "pods"}}, "/podSigner/signerName", id="signer"),
    pytest.param(
        {"podSigner": {"signerName": "kubernetes.io/pods"}},
        "/podSigner/signerName",
        id="signer-kubernetes-io",
    ),
    pytest.param(
        {"clusterCASecret": {"namespace": "PKI"}}, "/clusterCASecret/namespace", id="ca-namespace"
    ),
    pytest.param({"leaderElection": {"leaseName": ""}}, "/leaderElection/leaseName", id="lease"),
    pytest.param({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits", id="memory"),
    pytest.param({"nodeSelector": {"zone": 1}}, "/nodeSelector/zone", id="node-selector"),
]


@pytest.mark.parametrize(("values", "path"), BAD_VALUES)
def test_the_schema_refuses_bad_values(
    helm: Helm, tmp_path: Path, values: dict[str, Any], path: str
) -> None:
    result = helm(
        "template", "x", str(CHART), "--kube-version", "1.37.2",
        "-f", values_file(tmp_path, values), check=False,
    )  # fmt: skip
    assert result.returncode != 0, f"accepted: {values}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert path in result.stderr, result.stderr


def test_the_helm_labels_are_what_the_chart_renders(helm: Helm, tmp_path: Path) -> None:
    """helm_labels() is the list the comparisons take out; it is the chart's, for any release."""
    objects = documents(helm.template(release="other", namespace="elsewhere"))
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert {k: labels.get(k) for k in helm_labels("other")} == helm_labels("other"), key(obj)
        assert obj["metadata"].get("namespace") in (None, "elsewhere"), key(obj)
