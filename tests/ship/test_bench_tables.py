"""The bench's figures in README.md and docs/ are rendered from the
published results in docs/bench/, never typed: each table between bench
markers equals what the renderer makes of its JSON, so a hand edit of a
table, or a result published without rendering, fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.doc_tables import documents, rendered, shown_names, table
from bench.paths import PUBLISHED
from support.paths import REPO_ROOT

SHOWN = {document: shown_names(document.read_text()) for document in documents()}
WITH_TABLES = [document for document, names in SHOWN.items() if names]


def test_the_readme_and_the_design_show_bench_tables() -> None:
    names = {name for found in SHOWN.values() for name in found}
    assert {
        "default",
        "scale",
        "storm",
        "rotation",
        "policy",
        "rolls",
        "revocations",
        "clients",
        "profile",
    } <= names


@pytest.mark.parametrize(
    "document", WITH_TABLES, ids=[str(d.relative_to(REPO_ROOT)) for d in WITH_TABLES]
)
def test_each_bench_table_is_what_its_published_figures_render(document: Path) -> None:
    text = document.read_text()
    assert rendered(text) == text, (
        f"a bench table in {document.relative_to(REPO_ROOT)} differs from docs/bench/: "
        "edit the JSON and run `make bench-docs`"
    )


def test_every_published_result_is_shown() -> None:
    shown = {name for found in SHOWN.values() for name in found}
    published = {path.stem for path in PUBLISHED.glob("*.json")}
    assert published <= shown


def test_a_hand_edited_figure_differs_from_its_rendering() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    edited = text.replace("| 5.4 s |", "| 4.2 s |", 1)
    assert edited != text
    assert rendered(edited) == text


def test_the_target_clause_of_a_remark_gets_its_own_column() -> None:
    result = {
        "cpus": 2,
        "seconds": 60,
        "measured": "2026-01-02",
        "figures": [
            {"name": "a | b", "value": "1 s", "remark": "runs 1 s, 2 s; target 15 s"},
            {"name": "c", "value": "0 + 0", "remark": "target: only the first"},
            {"name": "d", "value": "3", "remark": ""},
        ],
    }
    assert table("x", json.loads(json.dumps(result))).splitlines() == [
        "| figure | measured | how | target |",
        "|---|---|---|---|",
        "| a \\| b | 1 s | runs 1 s, 2 s | 15 s |",
        "| c | 0 + 0 |  | only the first |",
        "| d | 3 |  |  |",
        "",
        "_From `docs/bench/x.json`: measured on 2026-01-02, 2 CPUs, the scenario took 60 s._",
    ]
