"""A scenario's figures, printed as a table and written to
`.bench/<scenario>.json`, the file `doc_tables --publish` takes from."""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict
from pathlib import Path

from bench.figures import Figures
from bench.paths import WORK


def report(scenario: str, figures: Figures, seconds: float) -> None:
    """The table on stdout, and the same figures as JSON in .bench/."""
    rows = figures.rows
    width = max(len(row.name) for row in rows)
    value_width = max(len(row.value) for row in rows)
    print(
        f"\nmtls-operator benchmark, scenario {scenario} ({os.cpu_count()} CPUs, "
        "operator + kube-apiserver + etcd on this machine)\n"
    )
    for row in rows:
        print(f"{row.name:<{width}}  {row.value:>{value_width}}  {row.remark}")
    result = write_result(scenario, figures, seconds)
    print(f"\nscenario {scenario} took {seconds:.0f} s; figures in {result}, logs in {WORK}")


def write_result(scenario: str, figures: Figures, seconds: float) -> Path:
    """`.bench/<scenario>.json`: the figures, and the machine and day they
    were measured on, which a published copy carries into the docs."""
    WORK.mkdir(exist_ok=True)
    result = WORK / f"{scenario}.json"
    result.write_text(
        json.dumps(
            {
                "scenario": scenario,
                "cpus": os.cpu_count(),
                "seconds": round(seconds),
                "measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
                "figures": [asdict(row) for row in figures.rows],
            },
            indent=2,
        )
        + "\n"
    )
    return result
