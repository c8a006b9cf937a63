"""Revocation against the real API server: a tenant revokes the certificate
it holds through its own RBAC, the operator records it, re-issues with a
new key and lists the serial in the CA's CRL, which reaches the tenant's
`mtls-ca-bundle`. The CRL is checked with `openssl crl -verify` and
pkilint, and real TLS stacks (openssl s_server -crl_check, Python's ssl
with VERIFY_CRL_CHECK_LEAF) refuse the revoked client and accept the new
one. Records outlive the operator; a tenant cannot reach another
namespace's certificates or the record itself. A CA that cannot sign CRLs
is counted and named."""

from __future__ import annotations

import datetime
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from mtls_operator.api.revocations import (
    CRL_KEY,
    REVOKE_REASON_ANNOTATION,
    REVOKE_SERIAL_ANNOTATION,
)
from mtls_operator.pki.certs import certificates_to_pem
from mtls_operator.pki.keys import private_key_to_pem

from e2e.tenants import Tenants, noisy_and_neighbour
from e2e.test_renewal import run_cli
from localcluster import Kubectl
from operator_process import OperatorProcess
from recipe_checks import (
    mtls_handshake,
    openssl,
    openssl_crl_verify,
    openssl_verify,
    pkilint,
    pkilint_crl,
)
from support.authorities import ca_key_usage, plain_certificate
from support.cluster import (
    CLUSTER_CA_SECRET,
    OPERATOR_NAMESPACE,
    TRUST_BUNDLE_LABEL,
    certificate,
    create_certificate,
    event_reasons,
    get_certificate,
    secret_data,
    wait_for,
    wait_ready,
)
from support.python_tls import server_verdict
from support.revocation_scene import LeafFiles, RevocationScene
from support.scrape import total

RECORD = f"{CLUSTER_CA_SECRET}-revocations"


def serial_of(pem: bytes) -> int:
    return x509.load_pem_x509_certificate(pem).serial_number


def record_data(kubectl: Kubectl) -> dict[str, str]:
    found = kubectl("get", "configmap", RECORD, "-n", OPERATOR_NAMESPACE, "-o", "json", check=False)
    if found.returncode != 0:
        return {}
    data: dict[str, str] = json.loads(found.stdout).get("data") or {}
    return data


def listed(crl_pem: str) -> dict[int, x509.RevokedCertificate]:
    if not crl_pem:
        return {}
    return {entry.serial_number: entry for entry in x509.load_pem_x509_crl(crl_pem.encode())}


def listing(crl_pem: str, serial: int) -> str | None:
    """The CRL if it lists `serial`, for waiting until one does."""
    return crl_pem if serial in listed(crl_pem) else None


def bundle_crl(kubectl: Kubectl, namespace: str) -> str:
    found = kubectl(
        "get", "configmap", "mtls-ca-bundle", "-n", namespace, "-o", "json", check=False
    )
    if found.returncode != 0:
        return ""
    return str((json.loads(found.stdout).get("data") or {}).get(CRL_KEY) or "")


def leaf_files(directory: Path, name: str, data: dict[str, bytes]) -> LeafFiles:
    directory.mkdir(parents=True, exist_ok=True)
    certificate_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    certificate_file.write_bytes(data["tls.crt"])
    key_file.touch(mode=0o600)
    key_file.write_bytes(data["tls.key"])
    return LeafFiles(certificate_file, key_file, serial_of(data["tls.crt"]))


def openssl_verify_downloading(ca_file: Path, leaf: Path) -> subprocess.CompletedProcess[str]:
    """`openssl verify` that fetches the CRL from the leaf's distribution point."""
    return openssl(
        "verify", "-crl_download", "-crl_check", "-CAfile", str(ca_file), str(leaf), check=False
    )


@pytest.fixture
def tenants(kubectl: Kubectl, operator: OperatorProcess) -> Iterator[Tenants]:
    with noisy_and_neighbour(kubectl, operator.kubeconfig) as found:
        kubectl("label", "namespace", found.noisy, f"{TRUST_BUNDLE_LABEL}=true")
        yield found


def test_a_tenant_revokes_its_client_certificate_and_servers_refuse_it(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    tenants: Tenants,
    tmp_path: Path,
) -> None:
    noisy, neighbour = tenants.noisy, tenants.neighbour
    for namespace, name, usage, spec in (
        (noisy, "server", "server", {"dnsNames": [f"server.{noisy}.svc"]}),
        (noisy, "laptop", "client", {"commonName": "laptop"}),
        (neighbour, "other", "client", {"commonName": "other"}),
    ):
        create_certificate(kube_api, namespace, certificate(name, usage, **spec))
        wait_ready(kube_api, namespace, name)
    stolen = secret_data(kube_api, noisy, "laptop-tls")
    neighbours = serial_of(secret_data(kube_api, neighbour, "other-tls")["tls.crt"])

    # Through its own RBAC: the tenant may not write the record, nor touch
    # the neighbour's certificate; naming the neighbour's serial on its own
    # certificate revokes nothing (it is not the certificate it holds).
    as_tenant = tenants.as_noisy
    assert (
        as_tenant(
            "auth", "can-i", "patch", "configmaps", "-n", OPERATOR_NAMESPACE, check=False
        ).stdout.strip()
        == "no"
    )
    refused = as_tenant(
        "annotate", "mtlscertificate", "other", "-n", neighbour,
        f"{REVOKE_SERIAL_ANNOTATION}={neighbours:x}", check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr, refused.stderr
    as_tenant(
        "annotate", "mtlscertificate", "server", "-n", noisy,
        f"{REVOKE_SERIAL_ANNOTATION}={neighbours:x}",
    )  # fmt: skip
    as_tenant(
        "annotate", "mtlscertificate", "laptop", "-n", noisy,
        f"{REVOKE_SERIAL_ANNOTATION}={serial_of(stolen['tls.crt']):x}",
        f"{REVOKE_REASON_ANNOTATION}=keyCompromise",
    )  # fmt: skip

    stolen_serial = serial_of(stolen["tls.crt"])
    crl_pem = wait_for(
        lambda: listing(record_data(kubectl).get(CRL_KEY, ""), stolen_serial),
        what="the stolen serial in the cluster CA's CRL",
    )
    entries = listed(crl_pem)
    assert neighbours not in entries
    reason = entries[stolen_serial].extensions.get_extension_for_class(x509.CRLReason)
    assert reason.value.reason is x509.ReasonFlags.key_compromise
    record = json.loads(record_data(kubectl)[f"serial-{stolen_serial:x}"])
    assert record["certificate"] == f"{noisy}/laptop"
    assert record["reason"] == "keyCompromise"

    def reissued_data() -> dict[str, bytes] | None:
        data = secret_data(kube_api, noisy, "laptop-tls")
        return data if serial_of(data["tls.crt"]) != stolen_serial else None

    reissued = wait_for(reissued_data, what="the laptop certificate re-issued")
    assert reissued["tls.key"] != stolen["tls.key"]
    assert "Revoked" in event_reasons(kube_api, noisy, "laptop")
    server_secret = secret_data(kube_api, noisy, "server-tls")
    assert serial_of(server_secret["tls.crt"]) != neighbours  # never mistaken for it
    untouched = get_certificate(kube_api, neighbour, "other") or {}
    assert (untouched.get("status") or {}).get("serialNumber") == f"{neighbours:x}"

    # The CRL reached the tenant's bundle; real verifiers read it from there.
    published = wait_for(
        lambda: listing(bundle_crl(kubectl, noisy), stolen_serial),
        what="the CRL in the tenant's mtls-ca-bundle",
    )
    files = tmp_path / "files"
    files.mkdir()
    ca_file, crl_file = files / "ca.crt", files / "ca.crl"
    ca_file.write_bytes(server_secret["ca.crt"])
    crl_file.write_text(published)
    assert "verify OK" in openssl_crl_verify(ca_file, crl_file).stderr
    assert pkilint_crl(crl_file) == []
    server = leaf_files(files, "server", server_secret)
    revoked = leaf_files(files, "revoked", stolen)
    renewed = leaf_files(files, "renewed", reissued)
    verdict = openssl_verify(ca_file, revoked.certificate, crl=crl_file)
    assert verdict.returncode != 0
    assert "certificate revoked" in verdict.stdout + verdict.stderr
    assert openssl_verify(ca_file, renewed.certificate, crl=crl_file).returncode == 0

    scene = RevocationScene(ca_file, crl_file, server, revoked, renewed)
    hostname = f"server.{noisy}.svc"
    assert server_verdict(scene, revoked, hostname) == "certificate revoked"
    assert server_verdict(scene, renewed, hostname) is None
    for leaf, accepted in ((revoked, False), (renewed, True)):
        handshake = mtls_handshake(
            server_cert=server.certificate,
            server_key=server.key,
            server_trusts=ca_file,
            client_cert=leaf.certificate,
            client_key=leaf.key,
            client_trusts=ca_file,
            server_crl=crl_file,
            hostname=hostname,
        )
        assert handshake.succeeded is accepted, handshake.server_output


def test_revocations_outlive_the_operator_and_serials_are_revoked_by_administrators(
    operator: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
) -> None:
    create_certificate(kube_api, namespace, certificate("ci-runner", "client", commonName="ci"))
    wait_ready(kube_api, namespace, "ci-runner")
    held = serial_of(secret_data(kube_api, namespace, "ci-runner-tls")["tls.crt"])

    # Asked while the operator is down (killed, as a crash would): the ask
    # is in etcd, so the next operator records it.
    operator.kill()
    revoked = run_cli(
        operator.kubeconfig, "revoke", "ci-runner", "-n", namespace, "--timeout", "0s"
    )
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == (
        f"revocation of certificate {held:x} (unspecified) asked for {namespace}/ci-runner\n"
    )
    # A serial no MtlsCertificate tracks any more, by an administrator.
    gone = 0x5EED_F00D
    by_serial = run_cli(
        operator.kubeconfig,
        "revoke", "--serial", f"{gone:x}", "--reason", "cessationOfOperation",
        "--ca", f"{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}",
    )  # fmt: skip
    assert by_serial.returncode == 0, by_serial.stderr
    operator.start()
    wait_for(
        lambda: {held, gone} <= set(listed(record_data(kubectl).get(CRL_KEY, ""))),
        what="both serials in the CRL",
    )
    crl_before = record_data(kubectl)[CRL_KEY]

    # Killed again right after: nothing is lost, and a restart signs no new
    # CRL for a record it already reflects.
    operator.kill()
    operator.start()
    wait_ready(kube_api, namespace, "ci-runner")
    after = record_data(kubectl)
    assert {held, gone} <= set(listed(after[CRL_KEY]))
    assert after[CRL_KEY] == crl_before
    entry: dict[str, Any] = json.loads(after[f"serial-{gone:x}"])
    ca = secret_data(kube_api, OPERATOR_NAMESPACE, CLUSTER_CA_SECRET)
    ca_not_after = x509.load_pem_x509_certificate(ca["tls.crt"]).not_valid_after_utc
    assert entry["notAfter"] == ca_not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert entry["reason"] == "cessationOfOperation"
    assert "certificate" not in entry
    assert datetime.datetime.fromisoformat(entry["revokedAt"]) <= datetime.datetime.now(
        datetime.UTC
    )


def test_revoke_errors_are_one_line(operator: OperatorProcess, namespace: str) -> None:
    for args, message in (
        (("revoke", "missing", "-n", namespace), f"MtlsCertificate {namespace}/missing not found"),
        (("revoke", "--serial", "xyz"), "--serial 'xyz' is not a hexadecimal serial number"),
        (("revoke",), "give a certificate NAME or --serial"),
    ):
        failed = run_cli(operator.kubeconfig, *args)
        assert failed.returncode == 1, failed
        assert failed.stderr == f"mtls-operator: error: {message}\n"


def test_a_malformed_revoke_annotation_is_refused_naming_it(
    operator: OperatorProcess, kube_api: client.ApiClient, kubectl: Kubectl, namespace: str
) -> None:
    create_certificate(kube_api, namespace, certificate("typo", "client", commonName="typo"))
    wait_ready(kube_api, namespace, "typo")
    kubectl(
        "annotate", "mtlscertificate", "typo", "-n", namespace,
        f"{REVOKE_SERIAL_ANNOTATION}=not-hex",
    )  # fmt: skip

    def ready_message() -> str | None:
        status = (get_certificate(kube_api, namespace, "typo") or {}).get("status") or {}
        ready: dict[str, Any] = next(
            (c for c in status.get("conditions", []) if c["type"] == "Ready"), {}
        )
        return ready.get("message") if ready.get("status") == "False" else None

    message = wait_for(ready_message, what="Ready=False for the malformed annotation")
    assert message == (f"{REVOKE_SERIAL_ANNOTATION} 'not-hex' is not a hexadecimal serial number")
    assert secret_data(kube_api, namespace, "typo-tls")["tls.crt"]  # kept as it is


@pytest.fixture
def distributing_operator(
    operator_process: OperatorProcess, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The session's operator with a CRL Distribution Point naming its own
    endpoint (the session one is stopped meanwhile: one leader per CA)."""
    operator_process.stop()
    process = OperatorProcess(
        operator_process.kubeconfig, tmp_path / "operator.log", operator_process.extra_args
    )
    process.extra_args = [
        *operator_process.extra_args,
        "--no-leader-election",
        "--crl-url",
        f"http://127.0.0.1:{process.metrics_port}/",
    ]
    process.start()
    yield process
    process.stop()


def test_leaves_name_the_endpoint_that_serves_their_crl(
    distributing_operator: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    create_certificate(kube_api, namespace, certificate("kiosk", "client", commonName="kiosk"))
    wait_ready(kube_api, namespace, "kiosk")
    data = secret_data(kube_api, namespace, "kiosk-tls")
    leaf = x509.load_pem_x509_certificate(data["tls.crt"])
    [point] = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    url = (
        f"http://127.0.0.1:{distributing_operator.metrics_port}"
        f"/crl/{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}.crl"
    )
    assert [name.value for name in point.full_name or ()] == [url]
    files = tmp_path / "files"
    files.mkdir()
    ca_file, leaf_file = files / "ca.crt", files / "leaf.crt"
    ca_file.write_bytes(data["ca.crt"])
    leaf_file.write_bytes(data["tls.crt"])
    assert pkilint(leaf_file) == []

    # What the endpoint serves is the CRL of the record, DER and PEM.
    # The URL is the test's own http:// one (hence the S310 waivers).
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/pkix-crl"
        served = x509.load_der_x509_crl(response.read())
    pem_url = url.removesuffix(".crl") + ".pem"
    with urllib.request.urlopen(pem_url, timeout=10) as response:  # noqa: S310
        assert x509.load_pem_x509_crl(response.read()) == served
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    assert served.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(url.replace(CLUSTER_CA_SECRET, "no-such-ca"), timeout=10)  # noqa: S310
    missing.value.close()
    assert missing.value.code == HTTPStatus.NOT_FOUND

    # OpenSSL fetches the list from the leaf's distribution point by itself.
    assert openssl_verify_downloading(ca_file, leaf_file).returncode == 0
    revoked = run_cli(
        distributing_operator.kubeconfig, "revoke", "kiosk", "-n", namespace,
        "--reason", "keyCompromise",
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr

    def refused() -> str | None:
        verdict = openssl_verify_downloading(ca_file, leaf_file)
        return verdict.stdout + verdict.stderr if verdict.returncode != 0 else None

    assert "certificate revoked" in wait_for(refused, what="the served CRL to revoke it")


def crl_served_by(replica: OperatorProcess) -> str:
    """The cluster CA's CRL as `replica`'s endpoint serves it (PEM)."""
    url = (
        f"http://127.0.0.1:{replica.metrics_port}/crl/{OPERATOR_NAMESPACE}/{CLUSTER_CA_SECRET}.pem"
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_a_failover_keeps_every_revocation_and_the_standby_serves_them(
    operator_process: OperatorProcess,
    kube_api: client.ApiClient,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    operator_process.stop()  # the two replicas below are the only operators
    replicas = [
        OperatorProcess(
            operator_process.kubeconfig, tmp_path / f"replica-{i}.log", operator_process.extra_args
        )
        for i in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        leader = wait_for(
            lambda: next(
                (r for r in replicas if total(r.metrics(), "mtls_operator_leader") == 1.0), None
            ),
            what="a leader",
        )
        standby = next(r for r in replicas if r is not leader)
        serials = {}
        for name in ("first", "second"):
            create_certificate(kube_api, namespace, certificate(name, "client", commonName=name))
            wait_ready(kube_api, namespace, name)
            serials[name] = serial_of(secret_data(kube_api, namespace, f"{name}-tls")["tls.crt"])
        revoked = run_cli(leader.kubeconfig, "revoke", "first", "-n", namespace)
        assert revoked.returncode == 0, revoked.stderr
        # The standby does no work, but it answers for the CRL the leader signed.
        wait_for(
            lambda: listing(crl_served_by(standby), serials["first"]),
            what="the standby serving the CRL that lists the first",
        )
        number_before = crl_number(record_data(kubectl)[CRL_KEY])

        leader.kill()
        wait_for(
            lambda: total(standby.metrics(), "mtls_operator_leader") == 1.0 or None,
            what="the standby to take the Lease",
        )
        revoked = run_cli(standby.kubeconfig, "revoke", "second", "-n", namespace)
        assert revoked.returncode == 0, revoked.stderr
        crl_pem = wait_for(
            lambda: listing(record_data(kubectl).get(CRL_KEY, ""), serials["second"]),
            what="the new leader's CRL listing the second",
        )
    finally:
        for replica in replicas:
            replica.stop()
    assert set(serials.values()) <= set(listed(crl_pem))
    assert crl_number(crl_pem) > number_before


def crl_number(crl_pem: str) -> int:
    crl = x509.load_pem_x509_crl(crl_pem.encode())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_ca_that_cannot_sign_crls_is_counted_and_named(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """A CA whose keyUsage lacks cRLSign (made elsewhere) can record a
    revocation but not list it: the failures are counted (what the alert
    MtlsCRLSigningFailing reads) and the log says why, naming the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    authority = plain_certificate(
        key, now, ca=True, key_usage=ca_key_usage(crl_sign=False), common_name="No CRLs CA"
    )
    certificate_file, key_file = tmp_path / "ca.crt", tmp_path / "ca.key"
    certificate_file.write_bytes(certificates_to_pem([authority]))
    key_file.write_bytes(private_key_to_pem(key))
    kubectl(
        "create", "secret", "tls", "no-crl-ca", "-n", namespace,
        f"--cert={certificate_file}", f"--key={key_file}",
    )  # fmt: skip
    revoked = run_cli(
        operator.kubeconfig, "revoke", "--serial", "5eedcafe", "--ca", f"{namespace}/no-crl-ca"
    )
    assert revoked.returncode == 0, revoked.stderr

    def failures() -> float | None:
        scraped = operator.metrics()
        found = total(
            scraped,
            "mtls_operator_crl_signings_total",
            namespace=namespace,
            secret="no-crl-ca",
            result="failure",
        )
        return found or None

    wait_for(failures, timeout=30, what="the CRL signing failure counted")
    assert (
        f"could not sign the CRL of CA {namespace}/no-crl-ca: CAError: the CA 'CN=No CRLs CA' has a "
        "keyUsage without cRLSign, so it cannot sign CRLs" in operator.log()
    )
    record = kubectl(
        "get", "configmap", "no-crl-ca-revocations", "-n", namespace, "-o", "json"
    )  # fmt: skip
    data = json.loads(record.stdout).get("data") or {}
    assert "serial-5eedcafe" in data
    assert CRL_KEY not in data
