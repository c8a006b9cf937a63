"""The metrics as Prometheus reads them (parsed with prometheus-client's own
parser): one prefix, every family declared with its help, the values set."""

from __future__ import annotations

from mtls_operator.runtime.metrics import (
    DURATION_BUCKETS,
    CertificateGauges,
    CRLGauges,
    Metrics,
)

from support.scrape import families, value

FAMILIES = {
    "mtls_operator_build_info": "gauge",
    "mtls_operator_certificate_expiration_timestamp_seconds": "gauge",
    "mtls_operator_certificate_renewal_timestamp_seconds": "gauge",
    "mtls_operator_certificate_ready": "gauge",
    "mtls_operator_certificate_reconciliations": "counter",
    "mtls_operator_ca_expiration_timestamp_seconds": "gauge",
    "mtls_operator_issuances": "counter",
    "mtls_operator_issuance_duration_seconds": "histogram",
    "mtls_operator_issuances_cut_to_ca": "counter",
    "mtls_operator_pod_certificate_requests": "counter",
    "mtls_operator_pod_certificate_signing_duration_seconds": "histogram",
    "mtls_operator_workload_rolls": "counter",
    "mtls_operator_crl_this_update_timestamp_seconds": "gauge",
    "mtls_operator_crl_next_update_timestamp_seconds": "gauge",
    "mtls_operator_revoked_certificates": "gauge",
    "mtls_operator_crl_signings": "counter",
}


def text(metrics: Metrics) -> str:
    return metrics.render().decode()


def test_every_family_is_declared_with_one_prefix_and_help() -> None:
    found = families(text(Metrics()))
    ours = {name: kind for name, (kind, _, _) in found.items() if name.startswith("mtls")}
    assert ours == FAMILIES
    assert all(name.startswith("mtls_operator_") for name in ours)
    assert all(found[name][1] for name in ours)
    # The standard process and Python series come with it.
    assert {"process_resident_memory_bytes", "python_info", "python_gc_objects_collected"} <= {
        s.name for _, _, samples in found.values() for s in samples
    } | set(found)


def test_reconciliations_are_counted_by_namespace() -> None:
    metrics = Metrics()
    for namespace in ("shop", "shop", "bank"):
        metrics.observe_reconciliation(namespace)
    scraped = text(metrics)
    name = "mtls_operator_certificate_reconciliations_total"
    assert value(scraped, name, namespace="shop") == 2
    assert value(scraped, name, namespace="bank") == 1


def test_workload_rolls_are_counted_by_namespace_and_result() -> None:
    metrics = Metrics()
    for namespace, result in (("shop", "success"), ("shop", "success"), ("bank", "failure")):
        metrics.observe_workload_roll(namespace, result)
    scraped = text(metrics)
    name = "mtls_operator_workload_rolls_total"
    assert value(scraped, name, namespace="shop", result="success") == 2
    assert value(scraped, name, namespace="bank", result="failure") == 1
    assert value(scraped, name, namespace="shop", result="failure") is None


def test_crl_signings_are_counted_by_ca_and_result() -> None:
    metrics = Metrics()
    for result in ("failure", "failure", "success"):
        metrics.observe_crl_signing("shop", "shop-ca", result)
    scraped = text(metrics)
    name = "mtls_operator_crl_signings_total"
    assert value(scraped, name, namespace="shop", secret="shop-ca", result="failure") == 2
    assert value(scraped, name, namespace="shop", secret="shop-ca", result="success") == 1


def test_build_info_names_the_version() -> None:
    [sample] = families(text(Metrics()))["mtls_operator_build_info"][2]
    assert sample.value == 1.0
    assert set(sample.labels) == {"version", "python"}


def test_certificate_gauges() -> None:
    metrics = Metrics()
    metrics.set_certificate(
        "shop",
        "payments",
        CertificateGauges("payments-tls", 1_800_000_000.0, 1_790_000_000.5, True),
    )
    metrics.set_certificate("shop", "broken", CertificateGauges("broken-tls", None, None, False))
    scraped = text(metrics)
    payments = {"namespace": "shop", "name": "payments", "secret": "payments-tls"}
    broken = {"namespace": "shop", "name": "broken", "secret": "broken-tls"}
    assert (
        value(scraped, "mtls_operator_certificate_expiration_timestamp_seconds", **payments)
        == 1.8e9
    )
    assert (
        value(scraped, "mtls_operator_certificate_renewal_timestamp_seconds", **payments)
        == 1_790_000_000.5
    )
    assert value(scraped, "mtls_operator_certificate_ready", **payments) == 1.0
    assert value(scraped, "mtls_operator_certificate_ready", **broken) == 0.0
    assert (
        value(scraped, "mtls_operator_certificate_expiration_timestamp_seconds", **broken) is None
    )
    metrics.forget_certificate("shop", "payments")
    assert value(text(metrics), "mtls_operator_certificate_ready", **payments) is None


def test_ca_gauges_come_and_go() -> None:
    metrics = Metrics()
    metrics.set_ca("mtls-operator", "ca", 1_900_000_000.0)
    ca = {"namespace": "mtls-operator", "secret": "ca"}
    assert value(text(metrics), "mtls_operator_ca_expiration_timestamp_seconds", **ca) == 1.9e9
    metrics.set_ca("mtls-operator", "ca", None)
    assert value(text(metrics), "mtls_operator_ca_expiration_timestamp_seconds", **ca) is None


def test_issuances_by_result_and_trigger_and_their_durations() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.02, 0.3, 4.0, 20.0):
        metrics.observe_issuance("success", "SecretMissing", seconds)
    metrics.observe_issuance("failure", "RenewalDue", 0.5)
    scraped = text(metrics)
    name = "mtls_operator_issuances_total"
    assert value(scraped, name, result="success", trigger="SecretMissing") == 5
    assert value(scraped, name, result="failure", trigger="RenewalDue") == 1
    duration = "mtls_operator_issuance_duration_seconds"
    assert value(scraped, f"{duration}_count", result="success") == 5
    assert value(scraped, f"{duration}_bucket", result="success", le="0.005") == 1
    assert value(scraped, f"{duration}_bucket", result="success", le="+Inf") == 5
    assert value(scraped, f"{duration}_bucket", result="success", le="0.025") == 2
    assert value(scraped, f"{duration}_bucket", result="success", le="5.0") == 4
    buckets = [s for s in families(scraped)[duration][2] if s.name.endswith("_bucket")]
    assert len(buckets) == 2 * (len(DURATION_BUCKETS) + 1), "both results, every bound and +Inf"


def test_leadership_is_shown_only_with_leader_election() -> None:
    metrics = Metrics()
    assert "mtls_operator_leader" not in families(text(metrics))
    metrics.leader = False
    assert value(text(metrics), "mtls_operator_leader") == 0.0
    metrics.leader = True
    assert value(text(metrics), "mtls_operator_leader") == 1.0


def test_pod_certificate_requests_and_certificates_cut_to_their_ca() -> None:
    metrics = Metrics()
    metrics.observe_pod_certificate("Issued", "Issued", 0.02)
    metrics.observe_pod_certificate("Denied", "PodNotFound", 0.0)
    metrics.observe_cut_to_ca("mtls-operator", "ca")
    scraped = text(metrics)
    requests = "mtls_operator_pod_certificate_requests_total"
    assert value(scraped, requests, outcome="Denied", reason="PodNotFound") == 1.0
    assert value(scraped, requests, outcome="Issued", reason="Issued") == 1.0
    signing = "mtls_operator_pod_certificate_signing_duration_seconds"
    assert value(scraped, f"{signing}_count") == 1.0
    assert value(scraped, f"{signing}_sum") == 0.02
    cut = "mtls_operator_issuances_cut_to_ca_total"
    assert value(scraped, cut, namespace="mtls-operator", secret="ca") == 1.0


def test_crl_gauges_by_ca_and_reason_until_forgotten() -> None:
    metrics = Metrics()
    revoked = (("keyCompromise", 2), ("superseded", 1))
    metrics.set_crl("mtls-operator", "mtls-operator-ca", CRLGauges(100.0, 700.0, revoked))
    scraped = text(metrics)
    ca = {"namespace": "mtls-operator", "secret": "mtls-operator-ca"}
    assert value(scraped, "mtls_operator_crl_this_update_timestamp_seconds", **ca) == 100.0
    assert value(scraped, "mtls_operator_crl_next_update_timestamp_seconds", **ca) == 700.0
    name = "mtls_operator_revoked_certificates"
    assert value(scraped, name, reason="keyCompromise", **ca) == 2
    assert value(scraped, name, reason="superseded", **ca) == 1
    metrics.set_crl("mtls-operator", "mtls-operator-ca", None)
    assert value(text(metrics), name, reason="keyCompromise", **ca) is None
