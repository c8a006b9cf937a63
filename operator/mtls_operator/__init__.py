"""mtls-operator: MtlsCertificate objects in, ready-to-mount mTLS Secrets out."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one version source is pyproject.toml, as the installed package records it.
    __version__ = version("mtls-operator")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
