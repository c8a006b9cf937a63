"""The bench's figures in README.md and docs/: each table between
`<!-- bench:NAME:begin -->` and `<!-- bench:NAME:end -->` is rendered from
docs/bench/NAME.json, a published result of the bench. The JSON is what is
edited (by a run, through `--publish`); the tables only follow it, and a
test fails on a table that does not.

    python -m bench.doc_tables                    render every table
    python -m bench.doc_tables --check            exit 1 if any differs
    python -m bench.doc_tables --publish default  take .bench/default.json first
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.paths import PUBLISHED, ROOT, WORK

BLOCK = re.compile(
    r"(?P<begin><!-- bench:(?P<name>[a-z0-9-]+):begin -->\n)"
    r"(?P<table>.*?)"
    r"(?P<end><!-- bench:(?P=name):end -->)",
    re.DOTALL,
)
# A remark's clause naming the target, which gets a column of its own.
TARGET = re.compile(r"^target:? ")
HEADER = "| figure | measured | how | target |\n|---|---|---|---|\n"


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def load(name: str) -> dict[str, Any]:
    path = PUBLISHED / f"{name}.json"
    if not path.exists():
        raise SystemExit(
            f"a document shows bench:{name} but {path.relative_to(ROOT)} does not exist; "
            f"publish a run of it (make bench SCENARIO={name})"
        )
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def table(name: str, result: dict[str, Any]) -> str:
    """The figures as Markdown, and where they come from."""
    rows = []
    for figure in result["figures"]:
        clauses = figure["remark"].split("; ") if figure["remark"] else []
        how = [clause for clause in clauses if not TARGET.match(clause)]
        target = [TARGET.sub("", clause) for clause in clauses if TARGET.match(clause)]
        cells = [figure["name"], figure["value"], "; ".join(how), "; ".join(target)]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |\n")
    return f"{HEADER}{''.join(rows)}\n_From `docs/bench/{name}.json`: {source(result)}._\n"


def source(result: dict[str, Any]) -> str:
    """A published run says when and on what it ran; figures recorded
    otherwise say where they come from."""
    if "source" in result:
        return str(result["source"])
    return (
        f"measured on {result['measured']}, {result['cpus']} CPUs, "
        f"the scenario took {result['seconds']} s"
    )


def rendered(text: str) -> str:
    """`text` with every bench table rendered again from its JSON."""
    return BLOCK.sub(
        lambda block: block["begin"] + table(block["name"], load(block["name"])) + block["end"],
        text,
    )


def shown_names(text: str) -> list[str]:
    return [block["name"] for block in BLOCK.finditer(text)]


def publish(name: str) -> None:
    """`.bench/NAME.json`, the last run's figures, become the published ones,
    and every document's tables follow."""
    PUBLISHED.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(WORK / f"{name}.json", PUBLISHED / f"{name}.json")
    render_all()


def render_all() -> None:
    for document in documents():
        text = document.read_text()
        if (new := rendered(text)) != text:
            document.write_text(new)
            print(f"bench tables of {document.relative_to(ROOT)} rendered again")


def stale() -> list[str]:
    return [
        str(document.relative_to(ROOT))
        for document in documents()
        if rendered(text := document.read_text()) != text
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.doc_tables", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="only say which tables differ")
    parser.add_argument("--publish", nargs="*", default=[], metavar="NAME")
    args = parser.parse_args()
    if args.check:
        if differing := stale():
            print(
                f"bench tables differ from docs/bench/ in {', '.join(differing)}: "
                "edit the JSON, then run `python -m bench.doc_tables`",
                file=sys.stderr,
            )
            return 1
        return 0
    for name in args.publish:
        publish(name)
    render_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
