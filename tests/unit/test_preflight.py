"""The start-up check asks for what the installed roles grant: their rules,
read from the package's copy of deploy/base/rbac.yaml, in the places
deploy/ binds them, with the names the flags give."""

from __future__ import annotations

from pathlib import Path

from mtls_operator import preflight
from mtls_operator.api.mtls_policy import LabelSelector
from mtls_operator.app import OperatorConfig
from mtls_operator.authorities.store import CARef

REPO_ROOT = Path(__file__).parents[2]
PACKAGE_COPY = REPO_ROOT / "operator" / "mtls_operator" / preflight.RBAC_MANIFEST
CLUSTER_WIDE = OperatorConfig(namespaces=(), cluster_ca=CARef("mtls-operator", "ca"))
NAMESPACED = OperatorConfig(
    namespaces=("shop", "demo"),
    cluster_ca=CARef("ops", "ca"),
    pod_signer_name="example.com/pods",
    lease_namespace="ops",
    lease_name="lease",
    trust_bundle_namespaces=LabelSelector(),
)


def asked(config: OperatorConfig) -> set[str]:
    return {str(p) for p in preflight.permissions(config)}


def test_the_package_ships_deploys_roles() -> None:
    original = REPO_ROOT / "deploy" / "base" / "rbac.yaml"
    assert PACKAGE_COPY.read_bytes() == original.read_bytes(), (
        f"{PACKAGE_COPY} differs from {original}: run hack/sync-chart-files.sh"
    )


def test_every_role_the_install_binds_is_checked_somewhere() -> None:
    assert set(preflight.role_scopes(NAMESPACED)) == set(preflight.installed_roles())


def test_cluster_wide_every_call_is_asked_for_cluster_wide() -> None:
    permissions = asked(CLUSTER_WIDE)
    assert {"list mtlscertificates.mtls.dev", "patch secrets", "watch namespaces"} <= permissions
    assert "sign signers.certificates.k8s.io mtls.dev/pod-identity" in permissions
    assert "update leases.coordination.k8s.io mtls-operator in mtls-operator" in permissions
    # ConfigMaps: the CAs' revocation records everywhere; bundles (which
    # the operator deletes) only with a trust bundle namespace selector.
    assert {"get configmaps", "patch configmaps"} <= permissions
    assert "delete configmaps" not in permissions


def test_served_namespaces_and_the_ca_namespace_are_asked_for_one_by_one() -> None:
    permissions = asked(NAMESPACED)
    for namespace in ("shop", "demo", "ops"):
        assert f"create secrets in {namespace}" in permissions
    assert "create secrets" not in permissions
    assert "delete configmaps" in permissions
    for namespace in ("shop", "demo", "ops"):
        assert f"patch configmaps in {namespace}" in permissions


def test_the_names_the_flags_give_replace_the_installed_ones() -> None:
    permissions = asked(NAMESPACED)
    assert "sign signers.certificates.k8s.io example.com/pods" in permissions
    assert "attest signers.certificates.k8s.io example.com/pods" in permissions
    assert "get leases.coordination.k8s.io lease in ops" in permissions
    assert not any("mtls.dev/pod-identity" in p for p in permissions)


def test_what_is_switched_off_is_not_asked_for() -> None:
    config = OperatorConfig(
        namespaces=(), cluster_ca=CARef("ops", "ca"), pod_signer=False, leader_election=False
    )
    permissions = asked(config)
    assert not any("podcertificaterequests" in p or "leases" in p for p in permissions)
    assert {p for p in permissions if p.startswith("attest")} == {
        "attest signers.certificates.k8s.io mtls.dev/cluster-ca"
    }


def test_workloads_are_asked_for_where_they_are_rolled_unless_rolls_are_off() -> None:
    assert {"watch deployments.apps", "patch daemonsets.apps"} <= asked(CLUSTER_WIDE)
    namespaced = asked(NAMESPACED)
    assert {"patch statefulsets.apps in shop", "list deployments.apps in demo"} <= namespaced
    assert not any(p.endswith(".apps in ops") for p in namespaced), "the CA's namespace"
    off = OperatorConfig(namespaces=(), cluster_ca=CARef("ops", "ca"), workload_rolls=False)
    assert not any(".apps" in p for p in asked(off))


def test_what_the_operator_works_without_is_not_insisted_on() -> None:
    assert not any("customresourcedefinitions" in p for p in asked(CLUSTER_WIDE))
