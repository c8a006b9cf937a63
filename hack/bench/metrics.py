"""Counters read from the API server's and the operator's metrics."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

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
    counts = requests_in(metrics_text)
    return sum(counts.writes(resource) for resource in resources)


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


@dataclass(frozen=True)
class RequestCounts:
    """The API server's requests by verb, resource, subresource and code,
    as its counter had them (or what two readings differ by)."""

    counts: Counter[tuple[str, str, str, str]]

    def __sub__(self, before: RequestCounts) -> RequestCounts:
        return RequestCounts(self.counts - before.counts)

    def writes(self, resource: str, subresource: str | None = None) -> int:
        """Write requests for `resource` (and `subresource`, "" for the
        object itself; None for any), whatever they were answered."""
        return sum(
            n
            for (verb, res, sub, _), n in self.counts.items()
            if verb in WRITE_VERBS and res == resource and subresource in (None, sub)
        )

    def refused(self, resource: str) -> Counter[str]:
        """Write requests for `resource` answered with an error, by code."""
        found: Counter[str] = Counter()
        for (verb, res, _, code), n in self.counts.items():
            if verb in WRITE_VERBS and res == resource and not code.startswith("2"):
                found[code] += n
        return found

    def reads(self, resource: str) -> int:
        """GETs of single objects (lists and watches left out)."""
        return sum(
            n for (verb, res, _, _), n in self.counts.items() if verb == "GET" and res == resource
        )

    def writes_by_resource(self) -> Counter[str]:
        """Every write request by resource, lease renewals left out (per time,
        not per anything measured)."""
        found: Counter[str] = Counter()
        for (verb, resource, _, _), n in self.counts.items():
            if verb in WRITE_VERBS and resource != "leases":
                found[resource] += n
        return found


def api_requests(kubectl: Kubectl) -> RequestCounts:
    """Every client's requests the API server has answered, from its own counter."""
    return requests_in(kubectl("get", "--raw", "/metrics", timeout=120).stdout)


def requests_in(metrics_text: str) -> RequestCounts:
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        key = (
            labels.get("verb", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
            labels.get("code", ""),
        )
        counts[key] += int(float(line.rsplit(" ", 1)[1]))
    return RequestCounts(counts)
