"""deploy/krew/mtls.yaml as krew-release-bot renders it on a release, and as
krew installs it: the real krew, from a local archive, with the plugin then
run through the path krew put it on."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from mtls_operator import __version__

from built_tools import tool
from support.paths import REPO_ROOT

TEMPLATE = REPO_ROOT / "deploy" / "krew" / "mtls.yaml"
TAG = f"v{__version__}"
# krew's naming guide: lowercase words joined by hyphens, no `kubectl-`
# prefix, and the name of what it works on.
PLUGIN_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
URI_AND_SHA = re.compile(r'\{\{\s*addURIAndSha "([^"]+)" \.TagName\s*\}\}')


def render(template: str, archive: Path) -> str:
    """What krew-release-bot does: the tag, and each platform's URI with the
    SHA-256 of its archive (here the one local archive for all of them)."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()

    def uri_and_sha(match: re.Match[str]) -> str:
        uri = match.group(1).replace("{{ .TagName }}", TAG)
        return f"uri: {uri}\n    sha256: {digest}"

    return URI_AND_SHA.sub(uri_and_sha, template).replace("{{ .TagName }}", TAG)


def plugin_archive(directory: Path) -> Path:
    """The archive layout the manifest names: kubectl-mtls and LICENSE. The
    release's kubectl-mtls is a single-file build; this one starts the
    installed package, which is what that build contains."""
    launcher = directory / "kubectl-mtls"
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m mtls_operator "$@"\n')
    launcher.chmod(0o755)
    archive = directory / "kubectl-mtls.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(launcher, "kubectl-mtls")
        tar.add(REPO_ROOT / "LICENSE", "LICENSE")
    return archive


def test_the_name_follows_krews_naming_guide() -> None:
    name = yaml.safe_load(render(TEMPLATE.read_text(), TEMPLATE))["metadata"]["name"]
    assert PLUGIN_NAME.match(name)
    assert not name.startswith("kubectl")
    assert TEMPLATE.stem == name, "krew-index wants plugins/<name>.yaml"


def test_krew_installs_the_rendered_manifest_and_the_plugin_runs(tmp_path: Path) -> None:
    archive = plugin_archive(tmp_path)
    manifest = tmp_path / "mtls.yaml"
    manifest.write_text(render(TEMPLATE.read_text(), archive))
    krew_root = tmp_path / "krew"
    env = {"KREW_ROOT": str(krew_root), "HOME": str(tmp_path), "PATH": os.environ["PATH"]}
    installed = subprocess.run(
        [str(tool("krew")), "install", f"--manifest={manifest}", f"--archive={archive}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    assert "Installed plugin: mtls" in installed.stderr + installed.stdout
    ran = subprocess.run(
        [str(krew_root / "bin" / "kubectl-mtls"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ran.stdout == f"mtls-operator {__version__}\n"
