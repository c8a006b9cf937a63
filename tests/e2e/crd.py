"""Installing the CRDs (MtlsCertificate, MtlsPolicy) in a test cluster, shared by the e2e
test modules."""

from __future__ import annotations

import subprocess
import time

from localcluster import ClusterError, Kubectl
from support.paths import REPO_ROOT

CRD_PATH = REPO_ROOT / "crds" / "mtlscertificates.yaml"
CRD_NAME = "mtlscertificates.mtls.dev"
POLICY_CRD_NAME = "mtlspolicies.mtls.dev"
API_VERSION = "mtls.dev/v1alpha1"
KIND = "MtlsCertificate"
DISCOVERY_TIMEOUT = 30.0


def apply_crd(kubectl: Kubectl) -> None:
    """Apply the CRDs and return once clients can use the kinds; safe to call repeatedly.

    One field manager with --force-conflicts keeps repeated applies from several test modules
    (or after an edit of the file) from failing on ownership conflicts.
    """
    kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=mtls-e2e",
        "-k",
        str(CRD_PATH.parent),
    )
    for name in (CRD_NAME, POLICY_CRD_NAME):
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=30s")
    _wait_discoverable(kubectl)


def server_apply(
    kubectl: Kubectl, namespace: str, text: str, *flags: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --server-side --validate=strict`: what the API server
    takes, with every unknown field refused."""
    return kubectl(
        "apply",
        "--server-side",
        "--validate=strict",
        "-n",
        namespace,
        *flags,
        "-f",
        "-",
        input=text,
        check=check,
    )


def _wait_discoverable(kubectl: Kubectl) -> None:
    # Established does not mean discovery serves the kind yet, and kubectl would answer
    # "no matches for kind" until it does; api-resources always asks the server afresh.
    deadline = time.monotonic() + DISCOVERY_TIMEOUT
    while True:
        listed = kubectl("api-resources", "--api-group=mtls.dev", "-o", "name", check=False)
        if {CRD_NAME, POLICY_CRD_NAME} <= set(listed.stdout.split()):
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"{CRD_NAME} not in discovery after {DISCOVERY_TIMEOUT:.0f}s")
        time.sleep(0.2)
