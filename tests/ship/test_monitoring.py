"""The monitoring we ship (deploy/monitoring), checked with the real tools:
`promtool check rules` and `promtool test rules` (built from the Go module),
every alert tested and given a runbook, the PrometheusRule equal to the rule
file, and every series the rules and the dashboard use one the operator
exports (the end-to-end scrape checks it against a running operator too)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mtls_operator.runtime.metrics import Metrics

from built_tools import tool
from ship.manifests import Render, find
from support.monitoring import (
    PROMETHEUS_SERIES,
    RULES,
    alert_rules,
    exported,
    expressions,
    series_in,
)
from support.paths import REPO_ROOT

MONITORING = REPO_ROOT / "deploy" / "monitoring"
ALERT_TESTS = REPO_ROOT / "tests" / "monitoring" / "alerts-test.yaml"
RUNBOOK = REPO_ROOT / "docs" / "alerts.md"


def promtool(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tool("promtool")), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def rules() -> list[dict[str, Any]]:
    return alert_rules()


def test_promtool_checks_the_rules() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_every_alert() -> None:
    tested = promtool("test", "rules", ALERT_TESTS.name, cwd=ALERT_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in cases
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    quiet = {
        case["alertname"]
        for test in cases
        for case in test["alert_rule_test"]
        if not case["exp_alerts"]
    }
    alerts = {r["alert"] for r in rules()}
    assert firing == alerts, "every alert is shown to fire"
    assert quiet == alerts, "and shown not to fire too early or on healthy series"


def test_every_alert_has_a_runbook_section() -> None:
    headings = {
        line[3:].strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")
    }
    for rule in rules():
        assert rule["alert"] in headings, rule["alert"]
        anchor = rule["alert"].lower()
        assert rule["annotations"]["runbook_url"].endswith(f"docs/alerts.md#{anchor}")


def test_the_prometheus_rule_holds_the_rule_file() -> None:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_rules_and_dashboard_use_only_exported_series() -> None:
    metrics = Metrics()
    metrics.leader = True  # exported with leader election, as shipped
    available = exported(metrics.render().decode()) | PROMETHEUS_SERIES
    used = set().union(*(series_in(e) for e in expressions()))
    assert used, "no series found: the parser is broken"
    assert used <= available, sorted(used - available)


def test_the_component_renders_onto_the_install(render: Render) -> None:
    objects = render("deploy/overlays/monitoring")
    monitor = find(objects, "ServiceMonitor", "mtls-operator")
    service = find(objects, "Service", "mtls-operator-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert find(objects, "PrometheusRule", "mtls-operator")["spec"] == yaml.safe_load(
        RULES.read_text()
    )
    dashboard = find(objects, "ConfigMap", "mtls-operator-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["dashboard.json"])["uid"] == "mtls-operator"
