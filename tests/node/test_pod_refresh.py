"""The real kubelet refreshing a pod certificate at the beginRefreshAt our signer chose: the
pod's mounted credential bundle changes to a new key and certificate, without a restart.

The API's bounds (a lifetime of at least an hour, beginRefreshAt at least ten minutes inside
it) and the signer's choice (about two thirds into the lifetime) make it a 40-minute test: it
is marked `long` and runs only when asked for, `pytest -m long tests/node`."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

import pytest
from cryptography import x509

from localcluster import Kubectl
from node.operator_pods import OPERATOR_NAMESPACE, SELECTOR, get_json, lease_holder
from node.sleeper import CREDENTIAL_BUNDLE, identity_pod
from support.cluster import wait_for

NAMESPACE = "refresh"
POD = "holder"
# The kubelet refreshes up to 5 minutes after beginRefreshAt (a jitter of its own), in a pass
# it runs every 1 to 2 minutes; the new files reach the pod at its next sync (syncFrequency 1m).
REFRESH_GRACE_SECONDS = 600


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_the_kubelet_refreshes_a_pod_certificate_at_begin_refresh_at(
    node_kubectl: Kubectl, operator_installed: float
) -> None:
    node_kubectl("create", "namespace", NAMESPACE)
    node_kubectl("apply", "-f", "-", input=json.dumps(identity_pod(NAMESPACE, POD)))
    node_kubectl("wait", "-n", NAMESPACE, f"pod/{POD}", "--for=condition=Ready", "--timeout=120s")
    first = _mounted_leaf(node_kubectl)
    [request] = get_json(node_kubectl, "podcertificaterequests", "-n", NAMESPACE)["items"]
    assert _serial(request) == first.serial_number
    refresh_at = _when(request["status"]["beginRefreshAt"])
    not_after = _when(request["status"]["notAfter"])
    print(
        f"issued for {not_after - first.not_valid_before_utc}, beginRefreshAt "
        f"{refresh_at - first.not_valid_before_utc} after notBefore"
    )
    assert refresh_at < not_after - datetime.timedelta(minutes=10)

    wait = (refresh_at - datetime.datetime.now(datetime.UTC)).total_seconds()
    time.sleep(max(0.0, wait))

    def refreshed() -> x509.Certificate | None:
        leaf = _mounted_leaf(node_kubectl)
        return leaf if leaf.serial_number != first.serial_number else None

    try:
        second = wait_for(
            refreshed,
            timeout=REFRESH_GRACE_SECONDS,
            interval=5,
            what="the pod's credential bundle refreshed",
        )
    except AssertionError as err:
        raise AssertionError(f"{err}\n{_what_happened(node_kubectl)}") from None
    seen = datetime.datetime.now(datetime.UTC)
    late = (seen - refresh_at).total_seconds()
    print(f"the pod held the refreshed certificate {late:.0f} s after beginRefreshAt (5 s samples)")

    assert second.public_key() != first.public_key(), "a new key with the new certificate"
    requests = get_json(node_kubectl, "podcertificaterequests", "-n", NAMESPACE)["items"]
    newest = max(requests, key=lambda r: r["metadata"]["creationTimestamp"])
    assert _when(newest["metadata"]["creationTimestamp"]) >= refresh_at.replace(microsecond=0)
    assert _serial(newest) == second.serial_number
    [status] = get_json(node_kubectl, "pod", POD, "-n", NAMESPACE)["status"]["containerStatuses"]
    assert status["restartCount"] == 0, "the kubelet refreshes the files under a running pod"


def _what_happened(kubectl: Kubectl) -> str:
    """The requests, the namespace's Events, who leads, and the operator's last log lines (the
    signer logs nothing for a request it issues, so any line about one is news)."""
    requests = get_json(kubectl, "podcertificaterequests", "-n", NAMESPACE)["items"]
    lines = [
        f"request {r['metadata']['name']} made {r['metadata']['creationTimestamp']}: "
        f"{[(c['type'], c.get('reason')) for c in r.get('status', {}).get('conditions', [])]}"
        for r in requests
    ]
    events = kubectl("get", "events", "-n", NAMESPACE, "-o", "wide", check=False).stdout
    pods = kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide", check=False).stdout
    logs = kubectl(
        "logs", "-n", OPERATOR_NAMESPACE, "-l", SELECTOR, "--tail=60", "--prefix", check=False
    )
    lines += [events, f"Lease holder: {lease_holder(kubectl)}", pods, logs.stdout, logs.stderr]
    return "\n".join(lines)


def _mounted_leaf(kubectl: Kubectl) -> x509.Certificate:
    bundle = kubectl("exec", "-n", NAMESPACE, POD, "--", "cat", CREDENTIAL_BUNDLE).stdout
    return x509.load_pem_x509_certificates(bundle.encode())[0]


def _serial(request: dict[str, Any]) -> int:
    chain = request["status"]["certificateChain"].encode()
    return x509.load_pem_x509_certificates(chain)[0].serial_number


def _when(stamp: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
