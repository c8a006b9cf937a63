"""The local node's claim on the host: a second node refuses to take the
host while the process that claimed it runs, also before its node is up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from localnode import HostClaim


def claim(pid: int) -> HostClaim:
    return HostClaim(Path("/tmp/a-node"), Path("/tmp/bin"), (), pid)


def test_a_claimant_that_runs_holds_the_host_until_it_ends() -> None:
    with subprocess.Popen(["sleep", "60"]) as other:
        assert claim(other.pid).claimant_runs()
        other.kill()
    assert not claim(other.pid).claimant_runs()


def test_a_claim_of_this_process_or_of_an_older_version_is_judged_by_its_node() -> None:
    assert not claim(os.getpid()).claimant_runs()
    assert not claim(0).claimant_runs()
