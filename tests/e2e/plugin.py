"""`kubectl mtls ...` as users run it: kubectl finds the plugin on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from localcluster import Kubectl


def kubectl_mtls(
    kubectl: Kubectl, home: Path, *args: str, kubeconfig: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl finds `kubectl-mtls` on PATH and hands it every argument."""
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
    }
    if "PYTHONPATH" in os.environ:  # the package under test, where it is not installed
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    return subprocess.run(
        [str(kubectl.binary), "mtls", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
