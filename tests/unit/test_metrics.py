from __future__ import annotations

import math

import pytest

from mtls_operator.runtime.metrics import DURATION_BUCKETS, CertificateGauges, Metrics

from helpers.prometheus_text import ExpositionError, Family, parse

FAMILIES = {
    "mtls_pod_certificate_requests_total": "counter",
    "mtls_pod_certificate_signing_duration_seconds": "histogram",
    "mtls_certificate_expiration_timestamp_seconds": "gauge",
    "mtls_certificate_renewal_timestamp_seconds": "gauge",
    "mtls_certificate_ready": "gauge",
    "mtls_ca_expiration_timestamp_seconds": "gauge",
    "mtls_issuance_total": "counter",
    "mtls_issuance_duration_seconds": "histogram",
}


def values(family: Family) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples}


def test_empty_metrics_declare_every_family() -> None:
    families = parse(Metrics().render())
    assert {name: f.kind for name, f in families.items()} == FAMILIES
    assert all(f.help for f in families.values())
    assert all(not f.samples for f in families.values())


def test_certificate_gauges() -> None:
    metrics = Metrics()
    metrics.set_certificate(
        "shop",
        "payments",
        CertificateGauges("payments-tls", 1_800_000_000.0, 1_790_000_000.5, True),
    )
    metrics.set_certificate("shop", "broken", CertificateGauges("broken-tls", None, None, False))
    families = parse(metrics.render())
    payments = (("name", "payments"), ("namespace", "shop"), ("secret", "payments-tls"))
    broken = (("name", "broken"), ("namespace", "shop"), ("secret", "broken-tls"))
    assert values(families["mtls_certificate_expiration_timestamp_seconds"]) == {
        payments: 1_800_000_000.0
    }
    assert values(families["mtls_certificate_renewal_timestamp_seconds"]) == {
        payments: 1_790_000_000.5
    }
    assert values(families["mtls_certificate_ready"]) == {payments: 1.0, broken: 0.0}


def test_forgotten_certificate_disappears() -> None:
    metrics = Metrics()
    metrics.set_certificate("shop", "payments", CertificateGauges("payments-tls", 1.0, 2.0, True))
    metrics.forget_certificate("shop", "payments")
    metrics.forget_certificate("shop", "never-seen")
    assert not parse(metrics.render())["mtls_certificate_ready"].samples


def test_ca_gauges_set_and_cleared() -> None:
    metrics = Metrics()
    metrics.set_ca("mtls-system", "mtls-operator-ca", 2_000_000_000.0)
    metrics.set_ca("shop", "shop-ca", 1_900_000_000.0)
    metrics.set_ca("shop", "shop-ca", None)
    family = parse(metrics.render())["mtls_ca_expiration_timestamp_seconds"]
    assert values(family) == {
        (("namespace", "mtls-system"), ("secret", "mtls-operator-ca")): 2_000_000_000.0
    }


@pytest.mark.parametrize(
    "awkward",
    ['quote"d', "back\\slash", "new\nline", 'all\\"\n', "ünïcödé", "{braces},=", ""],
)
def test_label_values_are_escaped(awkward: str) -> None:
    metrics = Metrics()
    metrics.set_certificate("shop", awkward, CertificateGauges("s", None, None, True))
    [sample] = parse(metrics.render())["mtls_certificate_ready"].samples
    assert sample.labels == {"namespace": "shop", "name": awkward, "secret": "s"}


def test_issuance_counter_by_result_and_trigger() -> None:
    metrics = Metrics()
    metrics.observe_issuance("success", "SecretMissing", 0.01)
    metrics.observe_issuance("success", "SecretMissing", 0.02)
    metrics.observe_issuance("success", "RenewalDue", 0.03)
    metrics.observe_issuance("failure", "IssuerChanged", 0.04)
    family = parse(metrics.render())["mtls_issuance_total"]
    assert values(family) == {
        (("result", "success"), ("trigger", "SecretMissing")): 2.0,
        (("result", "success"), ("trigger", "RenewalDue")): 1.0,
        (("result", "failure"), ("trigger", "IssuerChanged")): 1.0,
    }


def test_duration_histogram_is_cumulative() -> None:
    metrics = Metrics()
    observed = [0.003, 0.01, 0.07, 3.0, 42.0]  # 0.01 is a bucket bound: it counts as <= 0.01
    for seconds in observed:
        metrics.observe_issuance("success", "SecretMissing", seconds)
    metrics.observe_issuance("failure", "SecretMissing", 0.2)
    family = parse(metrics.render())["mtls_issuance_duration_seconds"]
    buckets = {
        s.labels["le"]: s.value
        for s in family.samples
        if s.name.endswith("_bucket") and s.labels["result"] == "success"
    }
    assert [float(le) for le in buckets] == [*DURATION_BUCKETS, math.inf]
    assert list(buckets.values()) == [1, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 5]
    by_name = {
        (s.name, s.labels["result"]): s.value for s in family.samples if "le" not in s.labels
    }
    assert by_name[("mtls_issuance_duration_seconds_count", "success")] == 5
    assert by_name[("mtls_issuance_duration_seconds_sum", "success")] == pytest.approx(
        sum(observed)
    )
    assert by_name[("mtls_issuance_duration_seconds_count", "failure")] == 1
    assert buckets["+Inf"] == by_name[("mtls_issuance_duration_seconds_count", "success")]


@pytest.mark.parametrize("seconds", [0.0, 0.005, 9.99, 10.0, 10.01, 1e6])
def test_every_observation_lands_in_inf_and_buckets_never_decrease(seconds: float) -> None:
    metrics = Metrics()
    metrics.observe_issuance("success", "RenewalDue", seconds)
    samples = parse(metrics.render())["mtls_issuance_duration_seconds"].samples
    counts = [s.value for s in samples if s.name.endswith("_bucket")]
    assert counts == sorted(counts)
    assert counts[-1] == 1
    expected_first = sum(1 for bound in DURATION_BUCKETS if seconds <= bound)
    assert sum(counts[:-1]) == expected_first


# --- The reader itself must refuse what Prometheus refuses. ---


@pytest.mark.parametrize(
    "text",
    [
        "# TYPE a gauge\na 1",
        "a 1\n",
        '# TYPE a gauge\na{x="1} 1\n',
        '# TYPE a gauge\na{x="\\t"} 1\n',
        '# TYPE a gauge\na{x="1"} 1\na{x="1"} 2\n',
        "# TYPE a gauge\na one\n",
        '# TYPE a gauge\na{1x="1"} 1\n',
        "# TYPE a thing\na 1\n",
    ],
    ids=[
        "no-final-newline",
        "no-type",
        "unterminated",
        "bad-escape",
        "duplicate",
        "bad-value",
        "bad-label",
        "bad-type",
    ],
)
def test_reader_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ExpositionError):
        parse(text)


def test_pod_certificate_requests() -> None:
    metrics = Metrics()
    metrics.observe_pod_certificate("Issued", "Issued", 0.02)
    metrics.observe_pod_certificate("Denied", "PodNotFound", 0.0)
    families = parse(metrics.render())
    assert values(families["mtls_pod_certificate_requests_total"]) == {
        (("outcome", "Denied"), ("reason", "PodNotFound")): 1.0,
        (("outcome", "Issued"), ("reason", "Issued")): 1.0,
    }
    signing = {
        s.name: s.value for s in families["mtls_pod_certificate_signing_duration_seconds"].samples
    }
    assert signing["mtls_pod_certificate_signing_duration_seconds_count"] == 1.0
    assert signing["mtls_pod_certificate_signing_duration_seconds_sum"] == 0.02
