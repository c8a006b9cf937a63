"""The package's shape, held as tests: each folder is one part, imports point
one way, controllers never reach into each other, and no class or function
grows past what a reader takes in at once."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from support.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "operator" / "mtls_operator"
MAX_CLASS_LINES = 250
MAX_FUNCTION_LINES = 60

# What each part may import (besides itself). Lower parts never import
# higher ones; controllers share only authorities, revocations, policy
# and runtime.
CONTROLLERS = {
    "certificates",
    "crls",
    "mtlspolicies",
    "podcertificates",
    "trustbundles",
    "workloads",
}
LOWER = {
    "pki": set(),
    "api": {"pki"},
    "policy": {"api", "pki"},
    "runtime": {"api"},
    "authorities": {"runtime", "api", "pki"},
    "tenancy": {"runtime", "policy", "api", "pki"},
    "revocations": {"authorities", "runtime", "api", "pki"},
    "convert": {"api", "pki"},
}
# What the controllers that sign and publish are given, made once by the app.
SHARED = {"shared": {"authorities", "revocations", "tenancy", "runtime", "api"}}
ALLOWED = {
    **LOWER,
    **SHARED,
    **{
        c: {"shared", "authorities", "revocations", "tenancy", "policy", "runtime", "api", "pki"}
        for c in CONTROLLERS
    },
    "app": {*LOWER, *SHARED, *CONTROLLERS},
    "preflight": {*LOWER, "app"},
    "cli": {*LOWER, *CONTROLLERS, "app", "preflight"},
}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def part_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py") if len(relative.parts) > 1 else relative.stem


def imported_parts(tree: ast.AST) -> set[str]:
    parts = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            pieces = name.split(".")
            if pieces[0] == "mtls_operator" and len(pieces) > 1:
                parts.add(pieces[1])
    return parts


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_one_way(path: Path) -> None:
    part = part_of(path)
    if part in ("__init__", "__main__"):
        return
    imported = imported_parts(ast.parse(path.read_text())) - {part}
    allowed = ALLOWED[part] | {"__init__", "__version__"}
    assert imported <= allowed, f"{part} imports {sorted(imported - allowed)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_classes_and_functions_stay_small(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            length, limit = node.end_lineno - node.lineno + 1, MAX_CLASS_LINES  # type: ignore[operator]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length, limit = node.end_lineno - node.lineno + 1, MAX_FUNCTION_LINES  # type: ignore[operator]
        else:
            continue
        assert length <= limit, f"{node.name} has {length} lines (at most {limit})"


def test_every_folder_is_a_known_part() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= ALLOWED.keys()
