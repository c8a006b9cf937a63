"""The /metrics endpoint, scraped: every listed series, with the values the
cluster holds; and JSON logs."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from cryptography import x509
from kubernetes import client

from e2e.support import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    certificate,
    create_certificate,
    secret_data,
    wait_ready,
    wait_reason,
)
from operator_process import OperatorProcess


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample line."""
    parsed = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            parsed[key] = float(value)
    return parsed


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
    scraped = samples(operator.metrics())
    labels = f'namespace="{namespace}",name="good",secret="good-tls"'

    assert scraped[f"mtls_certificate_expiration_timestamp_seconds{{{labels}}}"] == epoch(
        good["notAfter"]
    )
    assert (
        abs(
            scraped[f"mtls_certificate_renewal_timestamp_seconds{{{labels}}}"]
            - epoch(good["renewalTime"])
        )
        < 1
    )
    assert scraped[f"mtls_certificate_ready{{{labels}}}"] == 1.0
    assert (
        scraped[f'mtls_certificate_ready{{namespace="{namespace}",name="bad",secret="bad-tls"}}']
        == 0.0
    )
    assert (
        f'mtls_certificate_expiration_timestamp_seconds{{namespace="{namespace}",name="bad",secret="bad-tls"}}'
        not in scraped
    )

    ca = x509.load_pem_x509_certificate(
        secret_data(kube_api, OPERATOR_NAMESPACE, CLUSTER_CA_SECRET)["tls.crt"]
    )
    ca_series = f'mtls_ca_expiration_timestamp_seconds{{namespace="{OPERATOR_NAMESPACE}",secret="{CLUSTER_CA_SECRET}"}}'
    assert scraped[ca_series] == ca.not_valid_after_utc.timestamp()

    issued = scraped['mtls_issuance_total{result="success",trigger="SecretMissing"}']
    assert issued >= 1
    assert scraped['mtls_issuance_duration_seconds_count{result="success"}'] >= issued
    assert (
        scraped['mtls_issuance_duration_seconds_bucket{result="success",le="+Inf"}']
        == scraped['mtls_issuance_duration_seconds_count{result="success"}']
    )
    assert scraped["mtls_operator_leader"] == 1.0

    before = issued
    create_certificate(kube_api, namespace, certificate("more", "client", commonName="more"))
    wait_ready(kube_api, namespace, "more")
    assert (
        samples(operator.metrics())['mtls_issuance_total{result="success",trigger="SecretMissing"}']
        == before + 1
    )


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
