"""Where the bench works and where its published figures live."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Clusters, logs and each run's figures; not tracked.
WORK = ROOT / ".bench"
# The figures the README and docs/ show, one JSON file a scenario; tracked.
PUBLISHED = ROOT / "docs" / "bench"
