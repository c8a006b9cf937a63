"""The series the shipped alerting rules and dashboard read, and the ones a
scrape holds, to hold one against the other."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from support.paths import REPO_ROOT
from support.scrape import families

MONITORING = REPO_ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules.yaml"
# Series Prometheus makes itself, not the operator.
PROMETHEUS_SERIES = {"up"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def series_in(expression: str) -> set[str]:
    """The series names a PromQL expression reads: identifiers that are not
    functions, keywords, labels of a grouping clause or matcher, or numbers."""
    text = re.sub(r'"[^"]*"', "", expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text))
    return names - _KEYWORDS


def expressions() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    panels = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return [r["expr"] for r in alert_rules()] + panels


def exported(text: str) -> set[str]:
    """Every series name the scrape holds or declares (histograms' too)."""
    names = set()
    for name, (kind, _, samples) in families(text).items():
        names |= {s.name for s in samples} | {name}
        if kind == "counter":
            names.add(f"{name}_total")
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names
