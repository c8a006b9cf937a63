"""What GitOps tools say of objects, from the tools' own code: kstatus
(sigs.k8s.io/cli-utils, what Flux's health checks and `kubectl wait`-style
waits use), built from its Go module, and Argo CD's Lua health check, run
under Lua 5.1 (Argo CD's gopher-lua) through lupa."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

from built_tools import tool

ROOT = Path(__file__).resolve().parent.parent
ARGOCD_HEALTH = ROOT / "examples" / "gitops" / "argocd" / "health-mtlscertificate.lua"
LUPA = "lupa==2.8"
_LUA_RUNNER = """
import json, sys
import lupa.lua51 as lua

script = open(sys.argv[1]).read()
results = []
for case in json.load(sys.stdin):
    runtime = lua.LuaRuntime()
    runtime.globals().obj = runtime.table_from(case, recursive=True)
    health = runtime.execute(script)
    results.append({"status": health["status"], "message": health["message"]})
print(json.dumps(results))
"""


def kstatus(objects: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """kstatus's verdict of each object: {"status": Current|InProgress|Failed|..., "message"}."""
    result = subprocess.run(
        [str(tool("kstatus"))],
        input=json.dumps({"items": list(objects)}),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [json.loads(line) for line in result.stdout.splitlines()]


@cache
def lua_python() -> Path:
    """A Python with Lua 5.1 (lupa), in a virtualenv of its own, cached."""
    venv = Path.home() / ".cache" / "mtls-operator" / "tools" / f"lua-{LUPA.replace('==', '-')}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", LUPA],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return python


def argocd_health(objects: Sequence[Any], script: Path = ARGOCD_HEALTH) -> list[dict[str, str]]:
    """Argo CD's verdict of each object: {"status": Healthy|Progressing|Degraded, "message"}."""
    result = subprocess.run(
        [str(lua_python()), "-c", _LUA_RUNNER, str(script)],
        input=json.dumps(list(objects)),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the Lua health check failed: {result.stderr.strip()}")
    outcomes: list[dict[str, str]] = json.loads(result.stdout)
    return outcomes
