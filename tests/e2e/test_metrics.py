"""The /metrics endpoint, scraped: every listed series, with the values the
cluster holds; and JSON logs."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from cryptography import x509
from kubernetes import client

from operator_process import OperatorProcess
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    certificate,
    create_certificate,
    secret_data,
    wait_for,
    wait_ready,
    wait_reason,
)
from support.monitoring import PROMETHEUS_SERIES, exported, expressions, series_in
from support.scrape import total, value


def epoch(timestamp: str) -> float:
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def test_metrics_match_the_cluster(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    create_certificate(
        kube_api, namespace, certificate("good", "server", commonName="good.example")
    )
    create_certificate(
        kube_api, namespace, certificate("bad", "server", dnsNames=["bad_name.example"])
    )
    good = wait_ready(kube_api, namespace, "good")["status"]
    wait_reason(kube_api, namespace, "bad", "InvalidSpec")
    good_labels = {"namespace": namespace, "name": "good", "secret": "good-tls"}
    bad_labels = {"namespace": namespace, "name": "bad", "secret": "bad-tls"}
    ready = "mtls_operator_certificate_ready"

    def scraped_with_both() -> str | None:
        # The gauges are set when the status write returns, which a client
        # polling the status may see a moment earlier.
        text = operator.metrics()
        if value(text, ready, **good_labels) is None or value(text, ready, **bad_labels) is None:
            return None
        return text

    scraped = wait_for(scraped_with_both, timeout=10, what="both certificates' gauges")

    expiration = "mtls_operator_certificate_expiration_timestamp_seconds"
    assert value(scraped, expiration, **good_labels) == epoch(good["notAfter"])
    renewal = value(scraped, "mtls_operator_certificate_renewal_timestamp_seconds", **good_labels)
    assert renewal is not None
    assert abs(renewal - epoch(good["renewalTime"])) < 1
    assert value(scraped, ready, **good_labels) == 1.0
    assert value(scraped, ready, **bad_labels) == 0.0
    assert value(scraped, expiration, **bad_labels) is None

    ca = x509.load_pem_x509_certificate(
        secret_data(kube_api, OPERATOR_NAMESPACE, CLUSTER_CA_SECRET)["tls.crt"]
    )
    ca_expiration = value(
        scraped,
        "mtls_operator_ca_expiration_timestamp_seconds",
        namespace=OPERATOR_NAMESPACE,
        secret=CLUSTER_CA_SECRET,
    )
    assert ca_expiration == ca.not_valid_after_utc.timestamp()

    issuances = "mtls_operator_issuances_total"
    issued = value(scraped, issuances, result="success", trigger="SecretMissing")
    assert issued is not None
    assert issued >= 1
    duration = "mtls_operator_issuance_duration_seconds"
    count = value(scraped, f"{duration}_count", result="success")
    assert count is not None
    assert count >= issued
    assert value(scraped, f"{duration}_bucket", result="success", le="+Inf") == count
    assert value(scraped, "mtls_operator_leader") == 1.0
    assert total(scraped, "mtls_operator_build_info") == 1.0
    assert value(scraped, "process_resident_memory_bytes") is not None

    create_certificate(kube_api, namespace, certificate("more", "client", commonName="more"))
    wait_ready(kube_api, namespace, "more")
    after = value(operator.metrics(), issuances, result="success", trigger="SecretMissing")
    assert after == issued + 1


def test_every_series_of_the_alerts_and_the_dashboard_is_exported(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str
) -> None:
    create_certificate(kube_api, namespace, certificate("watched", "client", commonName="watched"))
    wait_ready(kube_api, namespace, "watched")
    available = exported(operator.metrics()) | PROMETHEUS_SERIES
    used = set().union(*(series_in(e) for e in expressions()))
    assert used <= available, sorted(used - available)


def test_json_logs(
    operator_process: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    operator_process.stop()
    json_operator = OperatorProcess(
        operator_process.kubeconfig,
        tmp_path / "operator.log",
        [
            "--namespace",
            namespace,
            "--cluster-ca-secret",
            f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
            "--log-format",
            "json",
            "--no-leader-election",
        ],
    )
    json_operator.start()
    try:
        create_certificate(
            kube_api, namespace, certificate("logged", "client", commonName="logged")
        )
        wait_ready(kube_api, namespace, "logged")
    finally:
        json_operator.stop()
    lines = [line for line in json_operator.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records, "the operator logged nothing"
    assert all("message" in record for record in records)
    assert not any("PRIVATE KEY" in line for line in lines)
