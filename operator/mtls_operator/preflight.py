"""What the operator needs from the cluster before it starts, checked once:
the CRDs served, the namespaces it names, and the permissions of every call
it will make. Each problem is one line that says what is wrong and what to
do, so that a misconfiguration stops the process at once with that line
instead of a retry loop that logs forever."""

from __future__ import annotations

from dataclasses import dataclass

from mtls_operator.api.paths import core_path, group_version_path, resource_path
from mtls_operator.api.pod_certificates import CERTIFICATES_API_VERSION
from mtls_operator.api.resources import API_VERSION, GROUP
from mtls_operator.app import OperatorConfig
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


CERTIFICATES = "certificates.k8s.io"
LEASES = "coordination.k8s.io"


def permissions(config: OperatorConfig) -> list[Permission]:
    """Every call the operator makes, in each namespace it serves."""
    needed: list[Permission] = []
    for ns in config.namespaces or (None,):
        needed += [Permission(v, GROUP, "mtlscertificates", ns) for v in ("list", "watch")]
        needed.append(Permission("patch", GROUP, "mtlscertificates", ns, subresource="status"))
        needed += [Permission(v, "", "secrets", ns) for v in ("list", "watch", "create", "patch")]
        needed.append(Permission("create", "", "events", ns))
        if config.pod_signer:
            requests = "podcertificaterequests"
            needed += [Permission(v, CERTIFICATES, requests, ns) for v in ("list", "watch")]
            needed.append(Permission("patch", CERTIFICATES, requests, ns, subresource="status"))
    ca = config.cluster_ca.namespace
    needed += [Permission(v, "", "secrets", ca) for v in ("list", "watch")]
    needed += [Permission(v, "", "namespaces") for v in ("list", "watch")]
    needed += [Permission(v, GROUP, "mtlspolicies") for v in ("list", "watch")]
    needed.append(Permission("patch", GROUP, "mtlspolicies", subresource="status"))
    signers = ["mtls.dev/cluster-ca"]
    if config.pod_signer:
        signers.append(config.pod_signer_name)
        needed.append(Permission("sign", CERTIFICATES, "signers", name=config.pod_signer_name))
    bundles = "clustertrustbundles"
    needed += [Permission(v, CERTIFICATES, bundles) for v in ("list", "watch", "create", "update")]
    needed += [Permission("attest", CERTIFICATES, "signers", name=s) for s in signers]
    if config.trust_bundle_namespaces is not None:
        verbs = ("list", "watch", "create", "patch", "delete")
        needed += [Permission(v, "", "configmaps") for v in verbs]
    if config.leader_election:
        lease_ns, lease = config.lease_namespace, config.lease_name
        needed.append(Permission("create", LEASES, "leases", lease_ns))
        needed += [Permission(v, LEASES, "leases", lease_ns, name=lease) for v in ("get", "update")]
    return needed


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
