"""Fixtures for the tests of what we ship: kustomize renders with the pinned kubectl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from localcluster import ClusterError, control_plane_bin_dir
from ship.manifests import REPO_ROOT, Object, Render


@pytest.fixture(scope="session")
def kubectl_binary() -> Path:
    # The pinned build (kubectl v1.37, kustomize v5.8), as users of `kubectl apply -k` have;
    # any installed kubectl when it cannot be built here.
    try:
        return control_plane_bin_dir() / "kubectl"
    except ClusterError:
        found = shutil.which("kubectl")
        if found is None:
            raise
        return Path(found)


@pytest.fixture(scope="session")
def render(kubectl_binary: Path) -> Render:
    """`render("deploy")`: the objects `kubectl kustomize` makes of a directory of the repo."""

    def run(directory: str) -> list[Object]:
        result = subprocess.run(
            [str(kubectl_binary), "kustomize", str(REPO_ROOT / directory)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run
