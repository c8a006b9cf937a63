"""Counters read from the API server's and the operator's metrics."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from localcluster import Kubectl
from operator_process import OperatorProcess

WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
# What an issuance writes.
ISSUANCE_RESOURCES = frozenset({"secrets", "mtlscertificates", "events"})
POD_CERTIFICATE_RESOURCES = frozenset({"podcertificaterequests"})


def api_writes(kubectl: Kubectl, resources: frozenset[str] = ISSUANCE_RESOURCES) -> int:
    """Write requests the API server has answered for `resources` (by
    default those an issuance writes: Secrets, MtlsCertificates and their
    status, Events), from its own request counter: every client's writes
    count, kopf's bookkeeping included. Lease renewals (leader election,
    every 2 s) are per time, not per issuance, and are left out."""
    return writes_in(kubectl("get", "--raw", "/metrics", timeout=120).stdout, resources)


def writes_in(metrics_text: str, resources: frozenset[str]) -> int:
    """The write requests for `resources` in the API server's metrics text."""
    total = 0
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in resources:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def operator_counter(operator: OperatorProcess, name: str, **labels: str) -> float:
    """The sum of the operator's samples of `name` with these labels."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(operator.metrics())
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def ready_gauges(operator: OperatorProcess) -> int:
    return int(operator_counter(operator, "mtls_operator_certificate_ready"))
