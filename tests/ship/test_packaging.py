"""The Python package as the container image gets it: requirements.lock pins every runtime
dependency with hashes, and installs into a fresh virtualenv with --require-hashes and
--no-deps, from PyPI, the way the Dockerfile does it; the entry point then starts.

Needs PyPI; the fresh install takes some 30 seconds."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.paths import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock"
DOCKERFILE = REPO_ROOT / "Dockerfile"
# What the image's build context holds (.dockerignore) and the Dockerfile copies.
BUILD_CONTEXT = (
    "requirements.lock",
    "build-requirements.lock",
    "pyproject.toml",
    "README.md",
    "operator",
)
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")
RUN_FLAGS = (
    "--namespace",
    "--all-namespaces",
    "--cluster-ca-secret",
    "--bootstrap-ca",
    "--metrics-port",
    "--min-duration",
    "--workers",
    "--reissue-rate",
    "--log-format",
)


def lock_entries() -> dict[str, tuple[str, list[str]]]:
    """Each locked package's canonical name -> (version, hashes)."""
    logical: list[str] = []
    pending = ""
    for raw in LOCK.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "requirements.lock ends with a continuation line"
    entries: dict[str, tuple[str, list[str]]] = {}
    for entry in logical:
        requirement, *options = entry.split()
        match = PIN.match(requirement)
        assert match, f"not pinned with ==: {entry!r}"
        assert options, f"{requirement} has no --hash"
        for option in options:
            assert HASH.match(option), f"{requirement}: unexpected option {option!r}"
        name = canonicalize_name(match["name"])
        assert name not in entries, f"{name} is locked twice"
        entries[name] = (match["version"], options)
    return entries


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    entries = lock_entries()
    assert len(entries) >= len(runtime_requirements())
    for requirement in runtime_requirements():
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} from pyproject.toml is not in requirements.lock"
        version, _ = entries[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"requirements.lock pins {name}=={version}, outside pyproject's {requirement}"
        )


def _imported_modules(package: Path) -> set[str]:
    """The top-level modules the package's code imports."""
    found: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.partition(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.partition(".")[0])
    return found


def test_every_module_the_code_imports_is_a_declared_dependency() -> None:
    """A module that arrives only as another dependency's dependency goes when that one
    drops it (PyYAML came only with `kubernetes`)."""
    declared = {canonicalize_name(r.name) for r in runtime_requirements()}
    distributions = importlib.metadata.packages_distributions()
    missing = sorted(
        f"{module} ({', '.join(distributions[module])})"
        for module in _imported_modules(REPO_ROOT / "operator" / "mtls_operator")
        if module in distributions
        and module != "mtls_operator"
        and not {canonicalize_name(d) for d in distributions[module]} & declared
    )
    assert not missing, f"imported, but not in pyproject's dependencies: {missing}"


def test_the_lock_holds_no_dev_dependency_and_no_index_settings() -> None:
    entries = lock_entries()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for text in project["optional-dependencies"]["dev"]:
        name = canonicalize_name(Requirement(text).name)
        assert name not in entries, f"the dev dependency {name} is in requirements.lock"
    text = LOCK.read_text()
    for option in ("--index-url", "--extra-index-url", "--find-links", "-e "):
        assert option not in text, f"requirements.lock contains {option.strip()}"
    assert "make lock" in text, "the header should say how to regenerate the lock"


def test_the_dockerfile_installs_the_lock_with_hashes_on_a_pinned_base() -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", bases[0])
    assert "--require-hashes --no-deps" in text
    assert re.search(r"^USER 65532:65532$", text, flags=re.MULTILINE)
    assert '\nENTRYPOINT ["mtls-operator"]\n' in text
    # .dockerignore denies everything else, so the context is what the tests below install.
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignored[0] == "*"
    for name in BUILD_CONTEXT:
        assert f"!{name}" in ignored or f"!{name}/" in ignored, f".dockerignore drops {name}"


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv made the way the Dockerfile's builder stage makes one, from a copy of
    exactly the build context (so the checkout gets no build/ or egg-info)."""
    root = tmp_path_factory.mktemp("image")
    context = root / "src"
    context.mkdir()
    for name in BUILD_CONTEXT:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(
                source,
                context / name,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
            )
        else:
            shutil.copy2(source, context / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    install = [*pip, "install", "--quiet", "--no-cache-dir"]
    for step in (
        [
            *install,
            "--require-hashes",
            "--no-deps",
            "--requirement",
            "requirements.lock",
            "--requirement",
            "build-requirements.lock",
        ],
        [*install, "--no-deps", "--no-build-isolation", "."],
        # Every locked package's own requirements are in the lock too.
        [*pip, "check"],
        # The image drops the installer; the operator must not need it at run time.
        [*pip, "uninstall", "--quiet", "--yes", "pip", "setuptools"],
    ):
        result = subprocess.run(
            step, cwd=context, capture_output=True, text=True, check=False, timeout=600
        )
        assert result.returncode == 0, f"{' '.join(step[2:])}:\n{result.stdout}{result.stderr}"
    return venv


def test_the_locked_install_starts_the_operator(image_venv: Path) -> None:
    command = str(image_venv / "bin" / "mtls-operator")
    top = subprocess.run(
        [command, "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert top.returncode == 0, top.stderr
    assert "run" in top.stdout
    run = subprocess.run(
        [command, "run", "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    for flag in RUN_FLAGS:
        assert flag in run.stdout, f"`mtls-operator run --help` does not list {flag}"


def test_the_locked_install_imports_the_whole_operator(image_venv: Path) -> None:
    # `--help` may not import everything `run` needs; import every module, as `run` would.
    script = (
        "import importlib, pkgutil, mtls_operator\n"
        "for module in pkgutil.walk_packages(mtls_operator.__path__, 'mtls_operator.'):\n"
        "    if not module.name.endswith('__main__'):\n"
        "        importlib.import_module(module.name)\n"
        "import kopf, kubernetes, cryptography\n"
    )
    result = subprocess.run(
        [str(image_venv / "bin" / "python"), "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
