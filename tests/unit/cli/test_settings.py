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
from mtls_operator.policy.crl import CRLSettings


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


HOUR = datetime.timedelta(hours=1)


def test_workloads_are_rolled_by_default_one_a_second_after_five_quiet_seconds() -> None:
    config = config_of()
    assert config.workload_rolls
    assert config.workload_roll_rate == 1.0
    assert config.workload_roll_burst == 5
    assert config.workload_roll_window == datetime.timedelta(seconds=5)


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
        (["--no-workload-rolls"], "workload_rolls", False),
        (["--workload-rolls"], "workload_rolls", True),
        (["--workload-roll-rate", "0.2"], "workload_roll_rate", 0.2),
        (["--workload-roll-burst", "1"], "workload_roll_burst", 1),
        (["--workload-roll-window", "30s"], "workload_roll_window", 30),
        (["--workload-roll-window", "0s"], "workload_roll_window", 0),
        (["--crl-url", "http://ops.svc:8080/"], "crl_url", "http://ops.svc:8080"),
        (["--crl-validity", "72h"], "crl", CRLSettings(HOUR * 72, HOUR * 48)),
        (["--crl-refresh-before", "1h"], "crl", CRLSettings(HOUR * 168, HOUR)),
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
        (["--workload-roll-rate", "0"], "--workload-roll-rate 0.0: must be positive"),
        (["--workload-roll-burst", "0"], "--workload-roll-burst 0: must be at least 1"),
        (["--workload-roll-rate", "nan"], "--workload-roll-rate nan: must be positive"),
        (["--workload-roll-window=-1s"], "--workload-roll-window '-1s': must not be negative"),
        (["--workload-roll-window", "soon"], "--workload-roll-window: invalid duration 'soon'"),
        (["--crl-url", "https://ops.svc"], "--crl-url 'https://ops.svc': expected an http:// URL"),
        (["--crl-url", "http:///crl"], "--crl-url 'http:///crl': expected an http:// URL"),
        (["--crl-validity", "soon"], "--crl-validity: invalid duration 'soon'"),
        (
            ["--crl-validity", "24h"],
            "--crl-validity/--crl-refresh-before: the CRL refresh time 48h must be positive "
            "and shorter than its validity 24h",
        ),
    ],
)
def test_a_bad_value_is_refused_with_the_flags_name(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_of(*argv)
