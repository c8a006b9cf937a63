"""Reading what we ship: the repository's paths and rendered Kubernetes objects."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import yaml

from localcluster import kubectl_binary
from support.paths import REPO_ROOT

Object = dict[str, Any]
# `render("deploy")`: what `kubectl kustomize` makes of a directory of the repository.
Render = Callable[[str], list[Object]]


def kustomize(directory: str) -> list[Object]:
    """What `kubectl kustomize` makes of a directory of the repository, with
    the pinned kubectl (its kustomize is what users of `kubectl apply -k` have)."""
    result = subprocess.run(
        [str(kubectl_binary()), "kustomize", str(REPO_ROOT / directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[Object], kind: str, name: str, namespace: str | None = None) -> Object:
    """The one object of that kind and name (and namespace, if given)."""
    matches = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]
