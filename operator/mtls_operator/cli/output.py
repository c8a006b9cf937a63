"""`-o table|wide|json|yaml`, as kubectl prints: one place that turns rows
(dicts with camelCase keys, as Kubernetes writes them) into each format."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

TABLE, WIDE, JSON, YAML = "table", "wide", "json", "yaml"
MACHINE_FORMATS = (JSON, YAML)


def add_output_argument(parser: argparse.ArgumentParser, formats: Sequence[str]) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=formats,
        default=formats[0],
        help=f"output format: {', '.join(formats)} (default: {formats[0]})",
    )
    # Earlier releases spelled `-o json` this way; scripts keep working.
    parser.add_argument(
        "--json", action="store_const", const=JSON, dest="output", help=argparse.SUPPRESS
    )


def dump(data: Any, output: str) -> str:
    """`data` as JSON or YAML text."""
    if output == JSON:
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


def table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """Aligned columns; `columns` maps each heading to its row key. Missing
    values print as `-`, as kubectl prints `<none>` more briefly."""
    lines = [list(columns)] + [
        [str(row[key]) if row.get(key) is not None else "-" for key in columns.values()]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
