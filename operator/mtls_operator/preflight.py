"""What the operator needs from the cluster before it starts, checked once:
the CRDs served, the namespaces it names, and every permission its roles
grant (deploy/base/rbac.yaml, read from the package's copy), where it
needs them. Each problem is one line that says what is wrong and what to
do, so that a misconfiguration stops the process at once with that line
instead of a retry loop that logs forever."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from mtls_operator.api.paths import core_path, group_version_path, resource_path
from mtls_operator.api.pod_certificates import CERTIFICATES_API_VERSION
from mtls_operator.api.resources import API_VERSION, GROUP
from mtls_operator.app import OperatorConfig
from mtls_operator.authorities.store import CARef
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Kube

RBAC_HINT = "bind the ClusterRoles of deploy/base/rbac.yaml to the operator's ServiceAccount"


@dataclass(frozen=True)
class Permission:
    verb: str
    group: str
    resource: str
    namespace: str | None = None  # None: cluster-wide
    name: str | None = None
    subresource: str | None = None

    def __str__(self) -> str:
        target = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        if self.group:
            target += f".{self.group}"
        if self.name:
            target += f" {self.name}"
        where = f" in {self.namespace}" if self.namespace else ""
        return f"{self.verb} {target}{where}"


# The roles the operator is installed with, shipped with the package: a
# copy of deploy/base/rbac.yaml (hack/sync-chart-files.sh makes it, and a
# test holds it equal). The chart renders the same roles, also held equal.
RBAC_MANIFEST = "rbac.yaml"
# The names the manifest is written for: with other flags, the same rules
# hold for the names the flags give.
_INSTALLED = OperatorConfig(namespaces=(), cluster_ca=CARef("", ""))
# Granted for kopf's resource scanning, without which the operator still
# works (with warnings, deploy/README.md): the start-up does not insist.
_NOT_REQUIRED = frozenset({("apiextensions.k8s.io", "customresourcedefinitions")})


def installed_roles() -> dict[str, list[dict[str, Any]]]:
    """Each ClusterRole's and Role's rules, by the role's name."""
    text = resources.files("mtls_operator").joinpath(RBAC_MANIFEST).read_text()
    return {
        document["metadata"]["name"]: document["rules"]
        for document in yaml.safe_load_all(text)
        if document and document["kind"] in ("ClusterRole", "Role")
    }


def role_scopes(config: OperatorConfig) -> dict[str, tuple[str | None, ...]]:
    """Where each role is needed (None: cluster-wide), as deploy/ binds it;
    a role the configuration does not use is needed nowhere."""
    everywhere: tuple[str | None, ...] = (None,)
    return {
        "mtls-operator": config.ca_namespaces or everywhere,
        "mtls-operator-discovery": everywhere,
        "mtls-operator-policies": everywhere,
        "mtls-operator-pod-signer": everywhere if config.pod_signer else (),
        "mtls-operator-trust-bundles": everywhere,
        # The workloads of the served namespaces (not the CA's).
        "mtls-operator-workloads": (config.namespaces or everywhere)
        if config.workload_rolls
        else (),
        "mtls-operator-trust-bundle-configmaps": (
            everywhere if config.trust_bundle_namespaces is not None else ()
        ),
        "mtls-operator-leader-election": (
            (config.lease_namespace,) if config.leader_election else ()
        ),
    }


def permissions(config: OperatorConfig) -> list[Permission]:
    """Every call the operator makes, where it makes it: the rules of the
    installed roles, with the names this configuration uses."""
    renamed = {
        _INSTALLED.pod_signer_name: config.pod_signer_name if config.pod_signer else None,
        _INSTALLED.lease_name: config.lease_name,
    }
    roles = installed_roles()
    needed: list[Permission] = []
    for role, namespaces in role_scopes(config).items():
        for namespace in namespaces:
            for rule in roles[role]:
                needed += _rule_permissions(rule, namespace, renamed)
    return needed


def _rule_permissions(
    rule: dict[str, Any], namespace: str | None, renamed: dict[str, str | None]
) -> list[Permission]:
    listed = rule.get("resourceNames")
    names = (
        [renamed.get(n, n) for n in listed if renamed.get(n, n) is not None] if listed else [None]
    )
    found = []
    for group in rule["apiGroups"]:
        for named in rule["resources"]:
            resource, _, subresource = named.partition("/")
            if (group, resource) in _NOT_REQUIRED:
                continue
            found += [
                Permission(verb, group, resource, namespace, name, subresource or None)
                for verb in rule["verbs"]
                for name in names
            ]
    return found


async def problems(kube: Kube, config: OperatorConfig) -> list[str]:
    """What stops the operator from working, one line each; empty when nothing does."""
    found = await _missing_crds(kube, config)
    found += await _missing_namespaces(kube, config)
    denied = [p for p in permissions(config) if not await _allowed(kube, p)]
    if denied:
        listed = ", ".join(str(p) for p in denied[:8])
        more = f" and {len(denied) - 8} more" if len(denied) > 8 else ""
        found.append(f"the operator may not {listed}{more}: {RBAC_HINT}")
    return found


async def _missing_crds(kube: Kube, config: OperatorConfig) -> list[str]:
    found = []
    for plural in ("mtlscertificates", "mtlspolicies"):
        try:
            await kube.request(
                "GET", resource_path(API_VERSION, plural), params={"limit": "1"}, retry=False
            )
        except ApiError as err:
            if err.not_found:
                found.append(
                    f"the API server does not serve {plural}.{GROUP}: install the CRDs first "
                    "(kubectl apply -k crds/)"
                )
            # 403 and the like are the permission check's to report.
    if config.pod_signer:
        try:
            await kube.request("GET", group_version_path(CERTIFICATES_API_VERSION), retry=False)
        except ApiError as err:
            if err.not_found:
                found.append(
                    "the API server does not serve certificates.k8s.io/v1 PodCertificateRequests "
                    "(Kubernetes 1.37 or later): run with --pod-signer=off"
                )
    return found


async def _missing_namespaces(kube: Kube, config: OperatorConfig) -> list[str]:
    wanted: dict[str, list[str]] = {}
    for namespace in config.namespaces:
        wanted.setdefault(namespace, []).append("--namespace")
    wanted.setdefault(config.cluster_ca.namespace, []).append("the cluster CA's")
    if config.leader_election:
        wanted.setdefault(config.lease_namespace, []).append("the Lease's")
    found = []
    for namespace, uses in wanted.items():
        try:
            exists = (
                await kube.get(core_path("namespaces", None, namespace), retry=False) is not None
            )
        except ApiError:
            continue  # not ours to read: the permission check says what matters
        if exists:
            continue
        hint = f"create it (kubectl create namespace {namespace})"
        if "the Lease's" in uses:
            hint += ", give --lease-namespace, or run with --no-leader-election out of a cluster"
        found.append(f"namespace {namespace} ({' and '.join(uses)}) does not exist: {hint}")
    return found


async def _allowed(kube: Kube, permission: Permission) -> bool:
    attributes = {
        "verb": permission.verb,
        "group": permission.group,
        "resource": permission.resource,
    }
    for key, value in (
        ("namespace", permission.namespace),
        ("name", permission.name),
        ("subresource", permission.subresource),
    ):
        if value:
            attributes[key] = value
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": attributes},
    }
    try:
        answer = await kube.create(
            resource_path("authorization.k8s.io/v1", "selfsubjectaccessreviews"),
            review,
            retry=False,
        )
    except ApiError:
        return True  # cannot ask: let the call itself say
    return bool((answer.get("status") or {}).get("allowed"))
