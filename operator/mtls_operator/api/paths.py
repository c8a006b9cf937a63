"""Where each resource lives among the API server's URLs. Every path the
operator, its command line and its tools call is built here, so that a
resource's place (core group or not, namespaced or not) is spelled once."""

from __future__ import annotations

# The API version of the core group, served under /api instead of /apis.
CORE = "v1"


def group_version_path(api_version: str) -> str:
    """The root of an API version: /api/v1, or /apis/GROUP/VERSION."""
    return f"/api/{api_version}" if api_version == CORE else f"/apis/{api_version}"


def resource_path(
    api_version: str,
    plural: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The collection of one namespace, or of every namespace (and of a
    cluster-scoped resource) when `namespace` is None; with `name`, one
    object; with `subresource`, that part of it (status, proxy/configz)."""
    path = group_version_path(api_version)
    if namespace:
        path += f"/namespaces/{namespace}"
    path += f"/{plural}"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path


def core_path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    return resource_path(CORE, plural, namespace, name)


def secrets_path(namespace: str | None, name: str | None = None) -> str:
    return core_path("secrets", namespace, name)


def events_path(namespace: str) -> str:
    return core_path("events", namespace)


def leases_path(namespace: str, name: str | None = None) -> str:
    return resource_path("coordination.k8s.io/v1", "leases", namespace, name)
