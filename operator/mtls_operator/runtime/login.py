"""Credentials the way kubectl finds them: the in-cluster ServiceAccount,
else $KUBECONFIG (read now, not at import) or ~/.kube/config, through the
kubernetes client library so that exec plugins and auth providers work.

A login reads its files again each time: the API client logs in again on a
401, which is how a projected ServiceAccount token, rotated by the kubelet
in the same file, or a credential an exec plugin renews, is picked up."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import kopf

from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kubeconfig import NO_CREDENTIALS, KubeconfigChoice, check_context

Login = Callable[[], Awaitable[kopf.ConnectionInfo]]

_ACCOUNT_DIRECTORY = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class InCluster:
    """Where a pod finds its ServiceAccount: the token and CA files the
    kubelet projects, and the API server's address in the environment."""

    token_file: str = f"{_ACCOUNT_DIRECTORY}/token"
    ca_file: str = f"{_ACCOUNT_DIRECTORY}/ca.crt"
    environment: Mapping[str, str] = field(default_factory=lambda: os.environ)


async def default_login() -> kopf.ConnectionInfo:
    return await asyncio.to_thread(login)


def kubeconfig_login(choice: KubeconfigChoice) -> Login:
    """A login as `kubectl --kubeconfig PATH --context NAME` would make."""

    async def chosen() -> kopf.ConnectionInfo:
        return await asyncio.to_thread(login, choice)

    return chosen


def login(
    choice: KubeconfigChoice | None = None, in_cluster: InCluster | None = None
) -> kopf.ConnectionInfo:
    import kubernetes.client  # noqa: PLC0415 - heavy; only needed to log in
    import kubernetes.config  # noqa: PLC0415

    choice = choice or KubeconfigChoice()
    # A kubeconfig asked for by name wins over a ServiceAccount around us.
    if choice.explicit or not _load_in_cluster(in_cluster or InCluster()):
        check_context(choice)
        try:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=choice.config_file(), context=choice.context
            )
        except (kubernetes.config.ConfigException, OSError) as err:
            raise ApiError(
                0, NO_CREDENTIALS, f"no in-cluster ServiceAccount and no usable kubeconfig: {err}"
            ) from None
    config = kubernetes.client.Configuration.get_default_copy()
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def _load_in_cluster(account: InCluster) -> bool:
    """The ServiceAccount of the pod we run in, if we run in one."""
    import kubernetes.config  # noqa: PLC0415 - heavy; only needed to log in
    from kubernetes.config.incluster_config import InClusterConfigLoader  # noqa: PLC0415

    try:
        loader = InClusterConfigLoader(  # type: ignore[no-untyped-call] # the library is untyped
            token_filename=account.token_file,
            cert_filename=account.ca_file,
            environ=account.environment,
        )
        loader.load_and_set()  # type: ignore[no-untyped-call] # the library is untyped
    except kubernetes.config.ConfigException:
        return False
    return True


def authorization(info: kopf.ConnectionInfo) -> dict[str, str]:
    """The header that presents the login's credentials, if they are a
    token or a password (a client certificate is presented by TLS)."""
    if info.token:
        return {"Authorization": f"{info.scheme or 'Bearer'} {info.token}"}
    if info.username and info.password:
        # RFC 7617, in latin-1 as aiohttp's BasicAuth encodes it: that class
        # is deprecated since aiohttp 3.14 and goes in 4.0.
        pair = f"{info.username}:{info.password}".encode("latin-1")
        return {"Authorization": f"Basic {base64.b64encode(pair).decode('ascii')}"}
    return {}
