"""Every `kubectl apply -n NS -f examples/...` the documentation shows puts
the example where the identity policy allows it: applied as written, each
MtlsCertificate it holds would be issued, not refused with PolicyDenied."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from mtls_operator.cli.main import main

from support.paths import REPO_ROOT

DOCUMENTS = [
    *REPO_ROOT.glob("*.md"),
    *(REPO_ROOT / "docs").glob("*.md"),
    *(REPO_ROOT / "deploy").rglob("*.md"),
    *(REPO_ROOT / "examples").rglob("*.yaml"),
]
APPLY = re.compile(r"kubectl apply [^\n`]*-f examples/[^\n`]*")


def documented_applies() -> list[tuple[str, str | None, list[str]]]:
    found = []
    for document in DOCUMENTS:
        for line in APPLY.findall(document.read_text()):
            words = shlex.split(line)
            namespace = words[words.index("-n") + 1] if "-n" in words else None
            files = [words[i + 1] for i, word in enumerate(words) if word == "-f"]
            found.append((f"{document.relative_to(REPO_ROOT)}: {line}", namespace, files))
    return found


APPLIES = documented_applies()


def test_the_documentation_shows_apply_commands() -> None:
    assert len(APPLIES) >= 4


@pytest.mark.parametrize(("where", "namespace", "files"), APPLIES, ids=[a[0] for a in APPLIES])
def test_each_documented_apply_is_allowed_where_it_applies(
    where: str, namespace: str | None, files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    certificates = [
        name
        for name in files
        if any(
            (d or {}).get("kind") == "MtlsCertificate"
            for d in yaml.safe_load_all((REPO_ROOT / name).read_text())
        )
    ]
    for name in certificates:
        status = main(
            ["policy", "check", "-f", str(REPO_ROOT / name), "-n", namespace or "default"]
        )
        out = capsys.readouterr().out
        assert status == 0, f"{where}\n{out}"
