"""Logging in as kubectl would: the ServiceAccount a pod is given (its
projected token read again at every login, so that the client's re-login
after a 401 picks up the token the kubelet rotated), else a kubeconfig."""

from __future__ import annotations

from pathlib import Path

import kopf
import pytest

from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.kubeconfig import NO_CREDENTIALS, KubeconfigChoice, current_namespace
from mtls_operator.runtime.login import InCluster, authorization, login

from support.clock import NOW, FakeClock
from support.fake_transport import FakeApiServer, named
from support.loop import run

PATH = "/api/v1/namespaces/shop/secrets/web-tls"
SERVICE = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


def service_account(directory: Path, token: str) -> InCluster:
    """The files the kubelet projects into a pod, with `token` in its file."""
    (directory / "token").write_text(token)
    (directory / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return InCluster(str(directory / "token"), str(directory / "ca.crt"), SERVICE)


def kubeconfig(directory: Path, token: str) -> str:
    path = directory / "config"
    path.write_text(
        f"""
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {{server: "https://lab.example:6443", insecure-skip-tls-verify: true}}
users:
- name: admin
  user: {{token: {token}}}
contexts:
- name: lab
  context: {{cluster: lab, user: admin, namespace: shop}}
- name: other
  context: {{cluster: lab, user: admin}}
current-context: lab
"""
    )
    return str(path)


def test_in_a_pod_the_service_account_logs_in(tmp_path: Path) -> None:
    info = login(in_cluster=service_account(tmp_path, "token-1"))

    assert info.server == "https://10.96.0.1:443"
    assert info.ca_path == str(tmp_path / "ca.crt")
    assert authorization(info) == {"Authorization": "bearer token-1"}


def test_a_refused_token_is_read_again_from_its_file(tmp_path: Path) -> None:
    account = service_account(tmp_path, "token-1")
    server = FakeApiServer()

    async def log_in() -> kopf.ConnectionInfo:
        return login(in_cluster=account)

    async def scenario() -> None:
        kube = Kube(log_in, connect=server.connect, clock=FakeClock(NOW))
        server.answer("GET", PATH, named("web-tls", "1"))
        await kube.get(PATH)
        # The kubelet rotates the token; the old one works until it expires.
        (tmp_path / "token").write_text("token-2")
        server.answer("GET", PATH, named("web-tls", "1"))
        server.refuse("GET", PATH, 401, "Unauthorized")
        server.answer("GET", PATH, named("web-tls", "1"))
        await kube.get(PATH)
        await kube.get(PATH)

    run(scenario)
    assert [r.headers["Authorization"] for r in server.calls()] == [
        "bearer token-1",
        "bearer token-1",
        "bearer token-1",
        "bearer token-2",
    ]
    assert len(server.logins) == 2


def test_out_of_a_pod_the_kubeconfig_logs_in_and_is_read_again(tmp_path: Path) -> None:
    choice = KubeconfigChoice(kubeconfig(tmp_path, "admin-1"))
    first = login(choice, in_cluster=service_account(tmp_path, "pod-token"))
    kubeconfig(tmp_path, "admin-2")
    second = login(choice)

    assert first.server == "https://lab.example:6443"
    assert first.insecure
    assert authorization(first) == {"Authorization": "Bearer admin-1"}
    assert authorization(second) == {"Authorization": "Bearer admin-2"}


def test_a_context_the_kubeconfig_lacks_is_named_with_those_it_has(tmp_path: Path) -> None:
    choice = KubeconfigChoice(kubeconfig(tmp_path, "admin"), context="prod")

    with pytest.raises(
        ApiError, match=r"--context prod: no such context in .* \(it has: lab, other\)$"
    ) as caught:
        login(choice)
    assert caught.value.reason == NO_CREDENTIALS


def test_commands_default_to_the_namespace_of_the_context(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path, "admin")

    assert current_namespace(KubeconfigChoice(path)) == "shop"
    assert current_namespace(KubeconfigChoice(path, context="other")) == "default"


def test_no_service_account_and_no_kubeconfig_is_one_clear_error(tmp_path: Path) -> None:
    nowhere = InCluster(str(tmp_path / "token"), str(tmp_path / "ca.crt"), {})

    with pytest.raises(ApiError, match="no in-cluster ServiceAccount and no usable kubeconfig"):
        login(KubeconfigChoice(str(tmp_path / "missing")), in_cluster=nowhere)


@pytest.mark.parametrize(
    ("info", "header"),
    [
        (kopf.ConnectionInfo(server="s", token="t"), {"Authorization": "Bearer t"}),
        (
            kopf.ConnectionInfo(server="s", scheme="bearer", token="t"),
            {"Authorization": "bearer t"},
        ),
        (
            kopf.ConnectionInfo(server="s", username="u", password="p"),
            {"Authorization": "Basic dTpw"},
        ),
        (kopf.ConnectionInfo(server="s", certificate_path="c"), {}),
    ],
)
def test_authorization_presents_a_token_or_a_password(
    info: kopf.ConnectionInfo, header: dict[str, str]
) -> None:
    assert authorization(info) == header
