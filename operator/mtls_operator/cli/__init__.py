"""The `mtls-operator` (and `kubectl-mtls`) command line."""

from mtls_operator.cli.main import main

__all__ = ["main"]
