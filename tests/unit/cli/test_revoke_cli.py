"""`mtls-operator revoke` refuses arguments that do not go together, and
values it cannot read, before it asks the cluster anything: one line on
stderr, exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtls_operator.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(autouse=True)
def no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No kubeconfig to fall back on: an argument error is found first, or
    the test fails on a missing cluster instead."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "give a certificate NAME or --serial", id="neither-name-nor-serial"),
        pytest.param(
            ["--reason", "keyCompromise"],
            "give a certificate NAME or --serial",
            id="a-reason-alone",
        ),
        pytest.param(
            ["web", "--serial", "4f:1a:09"],
            "give a certificate NAME or --serial",
            id="both-name-and-serial",
        ),
        pytest.param(
            ["web", "--ca", "shop/shop-ca"],
            "--ca and --not-after go with --serial, not NAME",
            id="ca-with-name",
        ),
        pytest.param(
            ["web", "--not-after", "2027-03-01T00:00:00Z"],
            "--ca and --not-after go with --serial, not NAME",
            id="not-after-with-name",
        ),
        pytest.param(
            ["web", "--timeout", "soon"],
            "--timeout 'soon': invalid duration 'soon': expected e.g. 2160h, 90m or 1h30m",
            id="timeout-not-a-duration",
        ),
        pytest.param(
            ["web", "--timeout", "60"],
            "--timeout '60': invalid duration '60': expected e.g. 2160h, 90m or 1h30m",
            id="timeout-without-unit",
        ),
        pytest.param(
            ["--serial", "4f1a09", "--timeout", "1d"],
            "--timeout '1d': invalid duration '1d': unknown unit 'd' (use h, m, s, ms, us or ns)",
            id="timeout-in-days",
        ),
        pytest.param(
            ["--serial", "web-tls"],
            "--serial 'web-tls' is not a hexadecimal serial number",
            id="serial-not-hex",
        ),
        pytest.param(
            ["--serial", "00"],
            "--serial '00' is not a serial number (positive, at most 20 octets)",
            id="serial-zero",
        ),
        pytest.param(
            ["--serial", "4f1a09", "--ca", "shop-ca"],
            "--ca 'shop-ca': expected NAMESPACE/NAME",
            id="ca-without-namespace",
        ),
        pytest.param(
            ["--serial", "4f1a09", "--not-after", "next year"],
            "--not-after 'next year' is not an RFC 3339 time",
            id="not-after-not-a-time",
        ),
    ],
)
def test_revoke_refuses_arguments_that_do_not_go_together(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, "revoke", *argv)
    assert status == 1
    assert out == ""
    assert err == f"mtls-operator: error: {message}\n"
