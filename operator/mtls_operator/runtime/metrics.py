"""Prometheus metrics, through prometheus-client: one prefix,
`mtls_operator_`. The gauges of every certificate and CA are produced by a
collector at scrape time from plain values kept here (no labelled child
object per certificate), so that memory stays flat with the number of
certificates; counters and histograms are the library's."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mtls_operator import __version__

# A `_created` series per counter and histogram child says when it was first
# seen: noise for these, and a series per certificate's labels would double.
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "mtls_operator"
# The `result` label of the counters of attempts.
SUCCESS = "success"
FAILURE = "failure"
# Issuance takes milliseconds (ECDSA) to seconds (RSA 4096 on a busy node).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class CertificateGauges:
    secret: str
    not_after: float | None
    renewal: float | None
    ready: bool


@dataclass(frozen=True)
class CRLGauges:
    this_update: float
    next_update: float
    # Entries the CRL lists, by reason code name.
    revoked: tuple[tuple[str, int], ...]


class _StateCollector(Collector):
    """The per-certificate and per-CA gauges, and leadership, at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        metrics = self._metrics
        labels = ["namespace", "name", "secret"]
        expiration = GaugeMetricFamily(
            f"{PREFIX}_certificate_expiration_timestamp_seconds",
            "notAfter of the certificate in the Secret, as a Unix timestamp.",
            labels=labels,
        )
        renewal = GaugeMetricFamily(
            f"{PREFIX}_certificate_renewal_timestamp_seconds",
            "When the certificate will be renewed, as a Unix timestamp.",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            f"{PREFIX}_certificate_ready",
            "1 when the certificate's Ready condition is True, else 0.",
            labels=labels,
        )
        for (namespace, name), gauges in sorted(metrics.certificates.items()):
            values = [namespace, name, gauges.secret]
            if gauges.not_after is not None:
                expiration.add_metric(values, gauges.not_after)
            if gauges.renewal is not None:
                renewal.add_metric(values, gauges.renewal)
            ready.add_metric(values, 1.0 if gauges.ready else 0.0)
        yield from (expiration, renewal, ready)
        cas = GaugeMetricFamily(
            f"{PREFIX}_ca_expiration_timestamp_seconds",
            "notAfter of each CA in use, as a Unix timestamp.",
            labels=["namespace", "secret"],
        )
        for (namespace, name), not_after in sorted(metrics.cas.items()):
            cas.add_metric([namespace, name], not_after)
        yield cas
        yield from _crl_metrics(metrics.crls)
        if metrics.leader is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_leader",
                "1 when this replica holds the Lease and does the work, else 0.",
                value=1.0 if metrics.leader else 0.0,
            )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for standard in (ProcessCollector, PlatformCollector, GCCollector):
            standard(registry=self.registry)
        self.registry.register(_BuildInfo())
        self.certificates: dict[tuple[str, str], CertificateGauges] = {}
        self.cas: dict[tuple[str, str], float] = {}
        self.crls: dict[tuple[str, str], CRLGauges] = {}
        self.leader: bool | None = None  # None: leader election is off
        self.registry.register(_StateCollector(self))
        self._issuances = self._counter(
            "issuances",
            "Issuance attempts by result (success, failure) and trigger.",
            ["result", "trigger"],
        )
        self._issuance_seconds = self._histogram(
            "issuance_duration_seconds",
            "Time to generate the key, sign and write the Secret.",
            ["result"],
        )
        self._reconciliations = self._counter(
            "certificate_reconciliations",
            "Times the operator looked at a certificate (gathered and decided), by namespace: "
            "what a change of CA, policy or namespace made it judge again.",
            ["namespace"],
        )
        self._cut_to_ca = self._counter(
            "issuances_cut_to_ca",
            "Certificates issued shorter than asked because their CA expires first.",
            ["namespace", "secret"],
        )
        self._pod_requests = self._counter(
            "pod_certificate_requests",
            "PodCertificateRequests answered, by outcome (Issued, Denied, Failed) and reason.",
            ["outcome", "reason"],
        )
        self._workload_rolls = self._counter(
            "workload_rolls",
            "Workloads following reloads (mtls.dev/reload) rolled because a certificate or trust "
            "bundle they mount changed, by namespace and result (success, failure).",
            ["namespace", "result"],
        )
        self._crl_signings = self._counter(
            "crl_signings",
            "Attempts to sign a CA's CRL and write it into the CA's revocations record, by CA "
            "(namespace, secret) and result (success, failure).",
            ["namespace", "secret", "result"],
        )
        self._pod_signing = self._histogram(
            "pod_certificate_signing_duration_seconds",
            "Time from taking a request that is issued to writing its status.",
            [],
        )

    # Every counter and histogram is the operator's (one prefix) and is
    # served from this replica's registry; durations share one set of buckets.
    def _counter(self, name: str, documentation: str, labels: list[str]) -> Counter:
        return Counter(f"{PREFIX}_{name}", documentation, labels, registry=self.registry)

    def _histogram(self, name: str, documentation: str, labels: list[str]) -> Histogram:
        return Histogram(
            f"{PREFIX}_{name}",
            documentation,
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def set_certificate(self, namespace: str, name: str, gauges: CertificateGauges) -> None:
        self.certificates[(namespace, name)] = gauges

    def forget_certificate(self, namespace: str, name: str) -> None:
        self.certificates.pop((namespace, name), None)

    def set_ca(self, namespace: str, name: str, not_after: float | None) -> None:
        if not_after is None:
            self.cas.pop((namespace, name), None)
        else:
            self.cas[(namespace, name)] = not_after

    def set_crl(self, namespace: str, name: str, gauges: CRLGauges | None) -> None:
        """The CRL of the CA `namespace/name` as last signed or read."""
        if gauges is None:
            self.crls.pop((namespace, name), None)
        else:
            self.crls[(namespace, name)] = gauges

    def forget_work(self) -> None:
        """A replica that no longer leads reports no certificates, CAs or CRLs."""
        self.certificates.clear()
        self.cas.clear()
        self.crls.clear()

    def observe_issuance(self, result: str, trigger: str, seconds: float) -> None:
        self._issuances.labels(result, trigger).inc()
        self._issuance_seconds.labels(result).observe(seconds)

    def observe_reconciliation(self, namespace: str) -> None:
        self._reconciliations.labels(namespace).inc()

    def observe_cut_to_ca(self, namespace: str, secret: str) -> None:
        """A certificate cut to the expiry of the CA `namespace/secret`."""
        self._cut_to_ca.labels(namespace, secret).inc()

    def observe_pod_certificate(self, outcome: str, reason: str, seconds: float) -> None:
        """A PodCertificateRequest answered: Issued, Denied or Failed, and why."""
        self._pod_requests.labels(outcome, reason).inc()
        if outcome == "Issued":
            self._pod_signing.observe(seconds)

    def observe_workload_roll(self, namespace: str, result: str) -> None:
        """A workload's roll was written (success) or refused by the API (failure)."""
        self._workload_rolls.labels(namespace, result).inc()

    def observe_crl_signing(self, namespace: str, secret: str, result: str) -> None:
        """The CRL of the CA `namespace/secret` was written (success), or the
        CA could not sign it or the API refused it (failure)."""
        self._crl_signings.labels(namespace, secret, result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _crl_metrics(crls: dict[tuple[str, str], CRLGauges]) -> Iterator[Metric]:
    labels = ["namespace", "secret"]
    this_update = GaugeMetricFamily(
        f"{PREFIX}_crl_this_update_timestamp_seconds",
        "thisUpdate of the CA's current CRL (when it was signed), as a Unix timestamp.",
        labels=labels,
    )
    next_update = GaugeMetricFamily(
        f"{PREFIX}_crl_next_update_timestamp_seconds",
        "nextUpdate of the CA's current CRL, after which relying parties refuse it.",
        labels=labels,
    )
    revoked = GaugeMetricFamily(
        f"{PREFIX}_revoked_certificates",
        "Revoked certificates the CA's current CRL lists, by reason.",
        labels=[*labels, "reason"],
    )
    for (namespace, name), gauges in sorted(crls.items()):
        this_update.add_metric([namespace, name], gauges.this_update)
        next_update.add_metric([namespace, name], gauges.next_update)
        for reason, count in gauges.revoked:
            revoked.add_metric([namespace, name, reason], count)
    yield from (this_update, next_update, revoked)


class _BuildInfo(Collector):
    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            f"{PREFIX}_build_info",
            "The running version (the value is always 1).",
            labels=["version", "python"],
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
