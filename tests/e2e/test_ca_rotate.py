"""`mtls-operator ca rotate` on the real control plane: the three steps, each
only once every certificate is where the next needs it, while a sampler
checks that no leaf Secret ever fails to verify against its own ca.crt; a
step that waits for the roll of a workload mounting a leaf; and a rotation
stopped after its first step goes on from the second."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from kubernetes import client

from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RESTARTED_FOR_ANNOTATION,
    WorkloadKind,
)
from mtls_operator.pki import chain_problem, load_certificates

from localcluster import Kubectl
from operator_process import OperatorProcess
from recipe_checks import openssl_verify
from support.authorities import root_from_ca_init
from support.cluster import (
    b64,
    certificate,
    create_certificate,
    get_certificate,
    get_secret,
    secret_data,
    wait_for,
    wait_ready,
)
from support.workloads import workload_body

COMMAND = str(Path(sys.executable).parent / "mtls-operator")
CA_SECRET = "shop-ca"
LEAVES = ("web", "api", "worker")


def ca_secret(api: client.ApiClient, namespace: str, directory: Path) -> bytes:
    """A namespaced CA Secret from `ca init`; its root."""
    root, key = root_from_ca_init(directory, "Shop CA")
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=CA_SECRET),
            type="kubernetes.io/tls",
            data={"tls.crt": b64(root), "tls.key": b64(key), "ca.crt": b64(root)},
        ),
    )
    return root


def leaves(api: client.ApiClient, namespace: str) -> None:
    for name in LEAVES:
        body = certificate(
            name, "server", dnsNames=[f"{name}.{namespace}.svc"], caSecretName=CA_SECRET
        )
        create_certificate(api, namespace, body)
    for name in LEAVES:
        wait_ready(api, namespace, name)


def resource_version(api: client.ApiClient, namespace: str) -> str:
    secret = get_secret(api, namespace, CA_SECRET)
    assert secret is not None
    return str(secret["metadata"]["resourceVersion"])


def rotate_argv(operator: OperatorProcess, namespace: str, new_ca: Path, *extra: str) -> list[str]:
    where = ["-n", namespace, "--kubeconfig", str(operator.kubeconfig)]
    return [COMMAND, "ca", "rotate", CA_SECRET, *where, "--new-ca-dir", str(new_ca), *extra]


def rotate(
    operator: OperatorProcess, namespace: str, new_ca: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        rotate_argv(operator, namespace, new_ca, *extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


class Sampler(threading.Thread):
    """Reads every leaf Secret over and over; a tls.crt that does not chain
    to its own ca.crt is a moment a client would refuse the server."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        super().__init__(daemon=True)
        self.api, self.namespace = api, namespace
        self.samples, self.broken = 0, list[str]()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for name in LEAVES:
                data = secret_data(self.api, self.namespace, f"{name}-tls")
                chain = load_certificates(data["tls.crt"])
                anchors = load_certificates(data["ca.crt"])
                problem = chain_problem(chain, anchors, datetime.datetime.now(datetime.UTC))
                self.samples += 1
                if problem is not None:
                    self.broken.append(f"{name}: {problem}")
            self.done.wait(0.1)


def test_ca_rotate_does_the_three_steps_without_a_moment_of_distrust(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    ca_secret(kube_api, namespace, tmp_path / "old")
    leaves(kube_api, namespace)
    new, _ = root_from_ca_init(tmp_path / "new", "Shop CA 2")
    before = resource_version(kube_api, namespace)

    planned = rotate(operator, namespace, tmp_path / "new", "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert [line.split(":")[0] for line in planned.stdout.splitlines()] == [
        "would do step 1 of 3",
        "would do step 2 of 3",
        "would do step 3 of 3",
        f"3 certificate(s) signed by {namespace}/{CA_SECRET}",
    ]
    assert resource_version(kube_api, namespace) == before, "a dry run writes nothing"

    sampler = Sampler(kube_api, namespace)
    sampler.start()
    rotated = rotate(operator, namespace, tmp_path / "new", "--settle", "1s", "--timeout", "2m")
    sampler.done.set()
    sampler.join()
    assert rotated.returncode == 0, rotated.stderr
    done = [line for line in rotated.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in done] == [
        "step 1 of 3 done",
        "step 2 of 3 done",
        "step 3 of 3 done",
    ]
    assert rotated.stdout.splitlines()[-1].endswith(
        "is rotated: it signs with, and trusts only, the new CA"
    )
    print(f"{sampler.samples} samples of the leaf Secrets during the rotation")
    assert sampler.samples > 30
    assert sampler.broken == []

    ca = secret_data(kube_api, namespace, CA_SECRET)
    assert ca["tls.crt"] == new
    assert ca["ca.crt"] == new
    (tmp_path / "new-root.pem").write_bytes(new)
    for name in LEAVES:
        data = secret_data(kube_api, namespace, f"{name}-tls")
        assert data["ca.crt"] == new
        (tmp_path / f"{name}.pem").write_bytes(data["tls.crt"])
        verified = openssl_verify(tmp_path / "new-root.pem", tmp_path / f"{name}.pem")
        assert verified.returncode == 0, verified.stderr
        body = get_certificate(kube_api, namespace, name)
        assert body is not None
        assert body["status"]["revision"] == 2, "re-issued exactly once"

    again = rotate(operator, namespace, tmp_path / "new", "--settle", "0s")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        f"{namespace}/{CA_SECRET} is rotated: it signs with, and trusts only, the new CA"
    ]


def test_a_step_waits_for_the_rollout_of_a_workload_that_follows_reloads(
    operator: OperatorProcess,
    kubectl: Kubectl,
    kube_api: client.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """`web` follows reloads and has one replica, which never becomes available (no node):
    its rollout is under way, so the operator holds its roll and the rotation holds its next
    step, until the test scales it to none. `plain`, the same but without the annotation,
    holds nothing."""
    old = ca_secret(kube_api, namespace, tmp_path / "old")
    leaves(kube_api, namespace)
    new, _ = root_from_ca_init(tmp_path / "new", "Shop CA 2")
    web = workload_body("web", secrets=["web-tls"], replicas=1)
    plain = workload_body("plain", secrets=["api-tls"], replicas=1, follows=False)
    for body in (web, plain):
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    wait_for(
        lambda: (
            MOUNTED_DIGEST_ANNOTATION
            in deployment(kubectl, namespace, "web")["metadata"].get("annotations", {})
        ),
        timeout=30,
        what="web recorded by the operator",
    )
    serials = [serial_number(kube_api, namespace, "web")]
    argv = rotate_argv(operator, namespace, tmp_path / "new", "--settle", "1s", "--timeout", "2m")
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        assert run.stdout is not None
        lines: list[str] = []
        held = f"waiting: 1 workload(s) not rolled for step 1 yet: Deployment {namespace}/web"
        for line in run.stdout:
            lines.append(line.rstrip("\n"))
            if lines[-1] == held:
                break
        assert lines[-1] == held, (lines, run.stderr.read() if run.stderr else "")
        # Held: step 2 (signing with the new CA) is not done while web's pods are replaced.
        ca = secret_data(kube_api, namespace, CA_SECRET)
        assert (ca["tls.crt"], ca["ca.crt"]) == (old, old + new)
        assert restarted_for(deployment(kubectl, namespace, "web")) is None
        kubectl("scale", "-n", namespace, "deployment/web", "--replicas=0")
        out, err = run.communicate(timeout=240)
    lines += out.splitlines()
    assert run.returncode == 0, err
    done = [line.split(":")[0] for line in lines if line.startswith("step ")]
    assert done == ["step 1 of 3 done", "step 2 of 3 done", "step 3 of 3 done"]
    assert all("plain" not in line for line in lines)
    serials.append(serial_number(kube_api, namespace, "web"))
    rolled = deployment(kubectl, namespace, "web")
    assert restarted_for(rolled) == rolled["metadata"]["annotations"][MOUNTED_DIGEST_ANNOTATION]
    # Rolled once for each step: a new ca.crt, a new certificate, the old root dropped.
    assert [event["message"] for event in rolled_events(kubectl, namespace, "web")] == [
        "rolled for Secret web-tls (a new ca.crt)",
        f"rolled for Secret web-tls (serial {serials[0]} -> {serials[1]})",
        "rolled for Secret web-tls (a new ca.crt)",
    ]
    assert deployment(kubectl, namespace, "plain")["metadata"]["generation"] == 1


def deployment(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    found = kubectl("get", WorkloadKind.DEPLOYMENT.plural, name, "-n", namespace, "-o", "json")
    body: dict[str, Any] = json.loads(found.stdout)
    return body


def serial_number(api: client.ApiClient, namespace: str, name: str) -> str:
    body = get_certificate(api, namespace, name)
    assert body is not None
    return str(body["status"]["serialNumber"])


def rolled_events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"involvedObject.kind=Deployment,involvedObject.name={name},reason=CertificateRolled"
    found = kubectl("get", "events", "-n", namespace, "--field-selector", selector, "-o", "json")
    return sorted(
        json.loads(found.stdout)["items"], key=lambda event: event["metadata"]["creationTimestamp"]
    )


def restarted_for(body: dict[str, Any]) -> str | None:
    annotations = body["spec"]["template"]["metadata"].get("annotations") or {}
    value = annotations.get(RESTARTED_FOR_ANNOTATION)
    return str(value) if value is not None else None


def test_a_rotation_stopped_after_the_first_step_goes_on_from_the_second(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    old = ca_secret(kube_api, namespace, tmp_path / "old")
    leaves(kube_api, namespace)
    new, _ = root_from_ca_init(tmp_path / "new", "Shop CA 2")
    # Step 1 by hand, as docs/ca-rotation.md shows it.
    client.CoreV1Api(kube_api).patch_namespaced_secret(
        CA_SECRET, namespace, {"data": {"ca.crt": b64(old + new)}}
    )
    resumed = rotate(operator, namespace, tmp_path / "new", "--settle", "0s", "--timeout", "2m")
    assert resumed.returncode == 0, resumed.stderr
    done = [line.split(":")[0] for line in resumed.stdout.splitlines() if line.startswith("step ")]
    assert done == ["step 2 of 3 done", "step 3 of 3 done"]


def test_a_new_ca_with_an_encrypted_key_is_refused_in_one_line(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    ca_secret(kube_api, namespace, tmp_path / "old")
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("secret\n")
    subprocess.run(
        [
            COMMAND,
            "ca",
            "init",
            "--out",
            str(tmp_path / "new"),
            "--passphrase-file",
            str(passphrase),
        ],
        check=True,
        capture_output=True,
    )
    refused = rotate(operator, namespace, tmp_path / "new")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "is encrypted: ca rotate writes the key into the Secret as it is" in refused.stderr
