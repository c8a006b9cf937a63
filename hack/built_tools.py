"""The tools of hack/tools (promtool, kstatus, helm, krew), built from their pinned Go
modules on first use and cached outside the checkout."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

BUILD = Path(__file__).resolve().parent / "tools" / "build.sh"


@cache
def tool(name: str) -> Path:
    built = subprocess.run(
        [str(BUILD), name], check=True, capture_output=True, text=True, timeout=1800
    )
    return Path(built.stdout.strip().splitlines()[-1])
