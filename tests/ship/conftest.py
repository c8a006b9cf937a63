"""Fixtures for the tests of what we ship: kustomize renders with the pinned kubectl."""

from __future__ import annotations

import pytest

from ship.manifests import Render, kustomize


@pytest.fixture(scope="session")
def render() -> Render:
    """`render("deploy")`: the objects `kubectl kustomize` makes of a directory of the repo."""
    return kustomize
