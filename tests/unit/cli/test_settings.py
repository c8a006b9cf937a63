"""`mtls-operator run`'s flags read into the one settings object: a flag
left out leaves the default `OperatorConfig` holds, and a bad value is
refused with the flag's name."""

from __future__ import annotations

import argparse
import datetime

import pytest

from mtls_operator.app import OperatorConfig
from mtls_operator.authorities.store import CARef
from mtls_operator.cli import settings


def config_of(*argv: str) -> OperatorConfig:
    parser = argparse.ArgumentParser(exit_on_error=False)
    settings.add_arguments(parser)
    return settings.config_from_arguments(parser.parse_args(argv))


@pytest.fixture(autouse=True)
def operator_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "ops")


def test_without_flags_every_setting_is_the_configs_default() -> None:
    assert config_of() == OperatorConfig(
        namespaces=(), cluster_ca=CARef("ops", "mtls-operator-ca"), lease_namespace="ops"
    )


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["--workers", "4"], "workers", 4),
        (["--reissue-rate", "2.5"], "reissue_rate", 2.5),
        (["--metrics-port", "0"], "metrics_port", 0),
        (["--min-duration", "10s"], "min_duration", datetime.timedelta(seconds=10)),
        (["--no-leader-election"], "leader_election", False),
        (["--lease-name", "other"], "lease_name", "other"),
        (["--pod-signer", "off"], "pod_signer", False),
        (["--pod-signer-name", "example.com/pods"], "pod_signer_name", "example.com/pods"),
        (["--pod-cert-max-duration", "2h"], "pod_certificate_max_duration", 2 * 3600),
        (["--cluster-ca-secret", "ns/ca"], "cluster_ca", CARef("ns", "ca")),
    ],
)
def test_a_flag_given_sets_its_field(argv: list[str], field: str, value: object) -> None:
    found = getattr(config_of(*argv), field)
    if isinstance(found, datetime.timedelta) and isinstance(value, int):
        found = found.total_seconds()
    assert found == value


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "--workers 0: must be at least 1"),
        (["--reissue-rate", "0"], "--reissue-rate 0.0: must be positive"),
        (["--min-duration", "0s"], "--min-duration '0s': must be positive"),
        (["--min-duration", "soon"], "--min-duration: invalid duration 'soon'"),
        (["--pod-cert-max-duration", "30m"], "must be from 1h to 2184h (91 days)"),
        (["--pod-signer-name", "kubernetes.io/x"], "expected DOMAIN/PATH outside kubernetes.io"),
        (["--cluster-ca-secret", "ca"], "expected NAMESPACE/NAME"),
        (["--cluster-domain", ""], "--cluster-domain '': must be a DNS name"),
    ],
)
def test_a_bad_value_is_refused_with_the_flags_name(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_of(*argv)
