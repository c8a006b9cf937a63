"""`mtls-operator policy check`: offline, the operator's own decision over
the files of a GitOps repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtls_operator.cli import main

CERTIFICATES = """\
apiVersion: mtls.dev/v1alpha1
kind: MtlsCertificate
metadata: {name: payments, namespace: team-a}
spec:
  secretName: payments-tls
  usage: server
  dnsNames: [payments.team-a.svc, api.example.com]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ignored}
---
apiVersion: mtls.dev/v1alpha1
kind: MtlsCertificate
metadata: {name: own-ca, namespace: team-a}
spec: {secretName: s, usage: server, dnsNames: [anything.example.org], caSecretName: team-ca}
"""
POLICY = {
    "apiVersion": "mtls.dev/v1alpha1",
    "kind": "MtlsPolicy",
    "metadata": {"name": "team-a-public"},
    "spec": {
        "namespaceSelector": {"matchLabels": {"team": "a"}},
        "allow": {"dnsNames": ["api.example.com"]},
    },
}


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    certificates = tmp_path / "certificates.yaml"
    certificates.write_text(CERTIFICATES)
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "team-a.yaml").write_text(json.dumps(POLICY))
    return certificates, policies


def test_allowed_by_the_default_and_by_a_policy(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    certificates, policies = files
    argv = ["policy", "check", "-f", str(certificates), "--policy-file", str(policies)]
    assert main([*argv, "--namespace-label", "team=a"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "team-a/payments: allowed",
        '  ok  spec.dnsNames "payments.team-a.svc": the namespace default '
        "(*.team-a.svc and *.team-a.svc.cluster.local)",
        '  ok  spec.dnsNames "api.example.com": MtlsPolicy team-a-public',
        "team-a/own-ca: allowed: signed by the namespace's own CA 'team-ca'",
    ]


def test_refused_without_the_namespace_label(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    certificates, policies = files
    assert main(["policy", "check", "-f", str(certificates), "--policy-file", str(policies)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "team-a/payments: refused (PolicyDenied)"
    assert out[2].startswith(
        '  NO  spec.dnsNames "api.example.com": not a name of namespace team-a'
    )
    assert out[2].endswith("no MtlsPolicy selects namespace team-a")


def test_the_namespace_flag_wins_and_mistakes_are_one_line(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certificates, _ = files
    assert main(["policy", "check", "-f", str(certificates), "-n", "team-b"]) == 1
    assert capsys.readouterr().out.startswith("team-b/payments: refused (PolicyDenied)")
    assert main(["policy", "check", "-f", str(certificates), "--namespace-label", "team"]) == 1
    assert capsys.readouterr().err == (
        "mtls-operator: error: --namespace-label 'team': expected KEY=VALUE\n"
    )
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text(CERTIFICATES.replace(", namespace: team-a", ""))
    assert main(["policy", "check", "-f", str(unnamed)]) == 1
    assert capsys.readouterr().err == (
        "mtls-operator: error: the certificate names no namespace: give -n NAMESPACE\n"
    )


def test_an_invalid_policy_is_reported_and_grants_nothing(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certificates, _ = files
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({**POLICY, "spec": {**POLICY["spec"], "maxDuration": "1d"}}))  # type: ignore[dict-item]
    argv = ["policy", "check", "-f", str(certificates), "--policy-file", str(bad)]
    assert main([*argv, "--namespace-label", "team=a"]) == 1
    captured = capsys.readouterr()
    assert captured.err == (
        'MtlsPolicy team-a-public: grants nothing: spec.maxDuration "1d": '
        "unknown unit 'd' (use h, m, s, ms, us or ns)\n"
    )


def test_a_policy_entry_that_grants_nothing_is_reported_and_the_rest_grants(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certificates, _ = files
    legacy = tmp_path / "legacy.yaml"
    allow = {"dnsNames": ["api.example.com"], "commonNames": ["Acme, Inc"]}
    legacy.write_text(json.dumps({**POLICY, "spec": {**POLICY["spec"], "allow": allow}}))  # type: ignore[dict-item]
    argv = ["policy", "check", "-f", str(certificates), "--policy-file", str(legacy)]
    assert main([*argv, "--namespace-label", "team=a"]) == 0
    assert capsys.readouterr().err.startswith(
        'MtlsPolicy team-a-public: this entry grants nothing: spec.allow.commonNames[0] "Acme, Inc": '
    )
