"""The bad-input catalogue: every way an MtlsCertificate or what it points
at can be wrong, where each is stopped, and the message it carries. A case
is stopped either by the API server (schema or CEL: the apply fails, naming
the field) or by the operator (Ready=False with a reason, naming the field
or the object). After each, the operator is healthy and a good certificate
applied in the same namespace is Ready within seconds."""

from __future__ import annotations

import base64
import datetime
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from kubernetes import client

from localcluster import Kubectl
from operator_process import OperatorProcess
from recipe_checks import openssl
from support.authorities import intermediate_ca, plain_certificate, root_ca
from support.cluster import (
    certificate,
    condition,
    create_certificate,
    events,
    get_certificate,
    secret_data,
    wait_for,
    wait_ready,
    wait_reason,
)
from support.scrape import total

NOW = datetime.datetime.now(datetime.UTC)
API_SERVER = "the API server"
OPERATOR = "the operator"
# A good certificate applied after a bad one is Ready within this.
GOOD_WITHIN = 10.0


@dataclass(frozen=True)
class Case:
    """`spec` changes the base spec (None removes a field); `setup` makes
    what the certificate points at. `stopped_by` is API_SERVER (then
    `message` is in kubectl's error) or OPERATOR (then `reason` is on Ready
    and `message` in its message)."""

    spec: dict[str, Any]
    stopped_by: str
    message: str
    reason: str | None = None
    setup: Callable[[client.ApiClient, str], None] | None = None
    ready_after_all: bool = False  # the operator fixes or accepts it (with a warning)
    # Further checks once it is stopped: (api, namespace, operator).
    then: Callable[[client.ApiClient, str, OperatorProcess], None] | None = None


def refused(spec: dict[str, Any], message: str) -> Case:
    return Case(spec, API_SERVER, message)


def invalid(spec: dict[str, Any], message: str) -> Case:
    return Case(spec, OPERATOR, message, reason="InvalidSpec")


def key(**fields: Any) -> dict[str, Any]:
    return {"privateKey": fields}


# --- CA Secrets, built with cryptography, independent of the operator. ---


def _pem(certificate_: x509.Certificate) -> bytes:
    return certificate_.public_bytes(serialization.Encoding.PEM)


def _key_pem(key_: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key_.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def put_secret(
    api: client.ApiClient,
    namespace: str,
    name: str,
    data: dict[str, bytes],
    *,
    kind: str = "Opaque",
    annotations: dict[str, str] | None = None,
) -> None:
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=name, annotations=annotations),
            type=kind,
            data={k: base64.b64encode(v).decode() for k, v in data.items()},
        ),
    )


CA_SECRET = "team-ca"


def ca_secret(
    certificate_pem: bytes, key_pem: bytes, annotations: dict[str, str] | None = None
) -> Callable[[client.ApiClient, str], None]:
    def setup(api: client.ApiClient, namespace: str) -> None:
        put_secret(
            api,
            namespace,
            CA_SECRET,
            {"tls.crt": certificate_pem, "tls.key": key_pem},
            kind="kubernetes.io/tls",
            annotations=annotations,
        )

    return setup


def _valid_root() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return root_ca(NOW - datetime.timedelta(days=1), NOW + datetime.timedelta(days=365))


def not_a_ca() -> Callable[[client.ApiClient, str], None]:
    key_ = ec.generate_private_key(ec.SECP256R1())
    return ca_secret(_pem(plain_certificate(key_, NOW, ca=False)), _key_pem(key_))


def expired_ca() -> Callable[[client.ApiClient, str], None]:
    cert, key_ = root_ca(NOW - datetime.timedelta(days=30), NOW - datetime.timedelta(days=1))
    return ca_secret(_pem(cert), _key_pem(key_))


def future_ca() -> Callable[[client.ApiClient, str], None]:
    cert, key_ = root_ca(NOW + datetime.timedelta(days=2), NOW + datetime.timedelta(days=30))
    return ca_secret(_pem(cert), _key_pem(key_))


def mismatched_ca() -> Callable[[client.ApiClient, str], None]:
    cert, _ = _valid_root()
    _, other_key = _valid_root()
    return ca_secret(_pem(cert), _key_pem(other_key))


def encrypted_ca(passphrase: bytes | None) -> Callable[[client.ApiClient, str], None]:
    """A CA whose key is encrypted with "right", given `passphrase` (None: none given)."""
    cert, key_ = _valid_root()
    annotations = {"mtls.dev/passphrase-secret": "team-ca-passphrase"} if passphrase else None
    write_ca = ca_secret(_pem(cert), _key_pem(key_, b"right"), annotations)

    def setup(api: client.ApiClient, namespace: str) -> None:
        if passphrase is not None:
            put_secret(api, namespace, "team-ca-passphrase", {"passphrase": passphrase})
        write_ca(api, namespace)

    return setup


def garbage_ca() -> Callable[[client.ApiClient, str], None]:
    return ca_secret(b"this is not a certificate\n", b"nor is this a key\n")


def der_ca() -> Callable[[client.ApiClient, str], None]:
    cert, key_ = _valid_root()
    der_key = key_.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ca_secret(cert.public_bytes(serialization.Encoding.DER), der_key)


def short_lived_ca() -> Callable[[client.ApiClient, str], None]:
    cert, key_ = root_ca(NOW - datetime.timedelta(hours=1), NOW + datetime.timedelta(hours=3))
    return ca_secret(_pem(cert), _key_pem(key_))


def chain_in_wrong_order() -> Callable[[client.ApiClient, str], None]:
    """An intermediate CA whose tls.crt lists the root before the intermediate."""
    root, root_key = _valid_root()
    intermediate, intermediate_key = intermediate_ca(root, root_key, NOW)
    return ca_secret(_pem(root) + _pem(intermediate), _key_pem(intermediate_key))


def foreign_secret(kind: str) -> Callable[[client.ApiClient, str], None]:
    def setup(api: client.ApiClient, namespace: str) -> None:
        put_secret(api, namespace, "bad-tls", {"k": b"v"}, kind=kind)

    return setup


def first_owner(api: client.ApiClient, namespace: str) -> None:
    """Another certificate that already writes Secret bad-tls."""
    body = certificate("first", "server", "bad-tls", dnsNames=[f"first.{namespace}.svc"])
    create_certificate(api, namespace, body)
    wait_ready(api, namespace, "first")


def warned_and_counted(api: client.ApiClient, namespace: str, operator: OperatorProcess) -> None:
    """A lifetime cut to the CA's expiry is a Warning event and a metric."""
    warnings = [
        e
        for e in events(api, namespace, "bad")
        if e["type"] == "Warning" and e["reason"] == "CutToCAExpiry"
    ]
    assert warnings, "no CutToCAExpiry warning"
    assert "rotate the CA" in warnings[0]["message"]
    cut = total(operator.metrics(), "mtls_operator_issuances_cut_to_ca_total", namespace=namespace)
    assert cut == 1


def chain_put_in_order(api: client.ApiClient, namespace: str, _: OperatorProcess) -> None:
    """tls.crt holds the leaf, then the intermediate, whatever order the CA Secret had."""
    data = secret_data(api, namespace, "bad-tls")
    chain = x509.load_pem_x509_certificates(data["tls.crt"])
    assert len(chain) == 2
    assert chain[0].issuer == chain[1].subject


LONG_LABEL = "a" * 64
CA = {"caSecretName": CA_SECRET}

CASES: dict[str, Case] = {
    # Types, enums and ranges: the schema.
    "usage-a-number": refused({"usage": 5}, 'spec.usage: Invalid value: "integer"'),
    "usage-unknown": refused({"usage": "peer"}, 'spec.usage: Unsupported value: "peer"'),
    "secretName-missing": refused({"secretName": None}, "spec.secretName: Required value"),
    "secretName-upper-case": refused(
        {"secretName": "Bad_TLS"}, 'spec.secretName: Invalid value: "Bad_TLS"'
    ),
    "dnsNames-a-string": refused(
        {"dnsNames": "a.example"}, 'spec.dnsNames: Invalid value: "string"'
    ),
    "dnsNames-thousands": refused(
        {"dnsNames": [f"n{i}.{{ns}}.svc" for i in range(5000)]},
        "spec.dnsNames: Too many: 5000: must have at most 100 items",
    ),
    "dnsName-over-253": refused({"dnsNames": ["a" * 254]}, "spec.dnsNames[0]: Too long"),
    "commonName-over-64": refused({"commonName": "c" * 65}, "spec.commonName: Too long"),
    "no-identity": refused({"dnsNames": None}, "at least one identity is required"),
    "percentage-a-string": refused(
        {"renewBeforePercentage": "33"}, 'spec.renewBeforePercentage: Invalid value: "string"'
    ),
    "percentage-0": refused(
        {"renewBeforePercentage": 0}, "spec.renewBeforePercentage: Invalid value: 0"
    ),
    "percentage-100": refused(
        {"renewBeforePercentage": 100}, "spec.renewBeforePercentage: Invalid value: 100"
    ),
    "renewBefore-and-percentage": refused(
        {"renewBefore": "1h", "renewBeforePercentage": 10},
        "spec.renewBeforePercentage: Forbidden: set renewBefore or renewBeforePercentage, not both",
    ),
    "duration-in-days": refused({"duration": "90d"}, 'spec.duration: Invalid value: "90d"'),
    "duration-negative": refused({"duration": "-1h"}, 'spec.duration: Invalid value: "-1h"'),
    "duration-a-number": refused({"duration": 3600}, 'spec.duration: Invalid value: "integer"'),
    "renewBefore-not-shorter": refused(
        {"duration": "24h", "renewBefore": "24h"},
        "spec.renewBefore: Invalid value: renewBefore must be shorter than duration",
    ),
    "RSA-1024": refused(
        key(algorithm="RSA", size=1024), "RSA privateKey.size must be 2048, 3072 or 4096"
    ),
    "ECDSA-255": refused(
        key(algorithm="ECDSA", size=255), "ECDSA privateKey.size must be 256, 384 or 521"
    ),
    "Ed25519-with-size": refused(
        key(algorithm="Ed25519", size=256),
        "spec.privateKey.size: Forbidden: Ed25519 keys have a fixed size",
    ),
    "Ed25519-PKCS1": refused(
        key(algorithm="Ed25519", encoding="PKCS1"),
        "spec.privateKey.encoding: Invalid value: Ed25519 keys can only be PKCS8",
    ),
    "algorithm-unknown": refused(
        key(algorithm="DSA"), 'spec.privateKey.algorithm: Unsupported value: "DSA"'
    ),
    "size-a-string": refused(key(size="big"), 'spec.privateKey.size: Invalid value: "string"'),
    "ipAddress-over-45": refused({"ipAddresses": ["1" * 46]}, "spec.ipAddresses[0]: Too long"),
    "country-3-letters": refused(
        {"subject": {"countries": ["DEU"]}}, "spec.subject.countries[0]: Too long"
    ),
    "reserved-label": refused(
        {"secretTemplate": {"labels": {"mtls.dev/x": "y"}}},
        "spec.secretTemplate.labels: Forbidden: keys under mtls.dev/",
    ),
    "output-format-unknown": refused(
        {"additionalOutputFormats": [{"type": "JKS"}]},
        'spec.additionalOutputFormats[0].type: Unsupported value: "JKS"',
    ),
    "pkcs12-without-password": refused(
        {"keystores": {"pkcs12": {}}}, "spec.keystores.pkcs12.passwordSecretRef: Required value"
    ),
    "spec-over-the-request-limit": refused(
        {"secretTemplate": {"annotations": {"example.com/blob": "x" * (3 * 1024 * 1024)}}},
        "Request entity too large",
    ),
    # Names the schema cannot judge: the operator's parser.
    "dnsName-misplaced-wildcard": invalid(
        {"dnsNames": ["a.*.{ns}.svc"]},
        'spec.dnsNames[0] "a.*.{ns}.svc": a wildcard may only be the whole left-most label',
    ),
    "dnsName-bare-wildcard": invalid(
        {"dnsNames": ["*.svc"]}, "a wildcard must be followed by at least two labels"
    ),
    "dnsName-trailing-dot": invalid({"dnsNames": ["a.{ns}.svc."]}, "must not end with a dot"),
    "dnsName-label-over-63": invalid(
        {"dnsNames": [f"{LONG_LABEL}.{{ns}}.svc"]}, "is longer than 63 characters"
    ),
    "dnsName-non-ascii": invalid(
        {"dnsNames": ["bücher.{ns}.svc"]},
        "must be ASCII; write internationalised names in xn-- form",
    ),
    "dnsName-bad-label": invalid(
        {"dnsNames": ["-a-.{ns}.svc"]}, "must consist of a-z, 0-9 and '-'"
    ),
    "dnsName-empty-label": invalid({"dnsNames": ["a..{ns}.svc"]}, "must not have empty labels"),
    "ipAddress-leading-zeros": invalid(
        {"ipAddresses": ["010.0.0.1"]},
        'spec.ipAddresses[0] "010.0.0.1": not an IPv4 or IPv6 address',
    ),
    "ipAddress-zone": invalid({"ipAddresses": ["fe80::1%eth0"]}, "must not have a zone"),
    "ipAddress-port": invalid({"ipAddresses": ["10.0.0.1:443"]}, "not an IPv4 or IPv6 address"),
    "ipAddress-prefix": invalid({"ipAddresses": ["10.0.0.0/8"]}, "must not have a prefix length"),
    "uri-no-scheme": invalid(
        {"uris": ["not-a-uri"]}, 'spec.uris[0] "not-a-uri": a URI must start with a scheme'
    ),
    "uri-space": invalid({"uris": ["https://a.example/x y"]}, "must not contain spaces"),
    "uri-bad-escape": invalid(
        {"uris": ["https://a.example/%zz"]}, "must start a two-digit hex escape"
    ),
    "email-no-at": invalid(
        {"emailAddresses": ["nobody"]},
        'spec.emailAddresses[0] "nobody": an e-mail address must look like name@example.com',
    ),
    "email-bad-domain": invalid(
        {"emailAddresses": ["a@-x-.example.com"]}, "the domain after '@' is invalid"
    ),
    "duration-zero": invalid({"duration": "0s"}, 'spec.duration "0s": must be positive'),
    "duration-below-minimum": invalid(
        {"duration": "5s"}, 'spec.duration "5s": is shorter than the minimum'
    ),
    "renewBefore-zero": invalid({"renewBefore": "0s"}, 'spec.renewBefore "0s": must be positive'),
    "template-annotations-too-large": invalid(
        {"secretTemplate": {"annotations": {"example.com/blob": "x" * (300 * 1024)}}},
        "spec.secretTemplate.annotations",
    ),
    # What the certificate points at.
    "ca-missing": Case(CA, OPERATOR, f"CA Secret {{ns}}/{CA_SECRET}", "CANotFound"),
    "ca-not-a-ca": Case(CA, OPERATOR, "is not a CA certificate", "CAInvalid", not_a_ca()),
    "ca-expired": Case(CA, OPERATOR, "expired at", "CAInvalid", expired_ca()),
    "ca-not-yet-valid": Case(CA, OPERATOR, "is not valid before", "CAInvalid", future_ca()),
    "ca-key-mismatch": Case(
        CA, OPERATOR, "does not match the CA certificate", "CAInvalid", mismatched_ca()
    ),
    "ca-encrypted-no-passphrase": Case(
        CA, OPERATOR, "the CA key is unusable", "CAInvalid", encrypted_ca(None)
    ),
    "ca-wrong-passphrase": Case(
        CA, OPERATOR, "the CA key is unusable", "CAInvalid", encrypted_ca(b"wrong")
    ),
    "ca-garbage": Case(CA, OPERATOR, "the CA certificate is unreadable", "CAInvalid", garbage_ca()),
    "ca-der": Case(CA, OPERATOR, "the private key is not PEM", "CAInvalid", der_ca()),
    "ca-chain-wrong-order": Case(
        CA,
        OPERATOR,
        "issued by",
        "Issued",
        chain_in_wrong_order(),
        ready_after_all=True,
        then=chain_put_in_order,
    ),
    "duration-beyond-ca": Case(
        CA,
        OPERATOR,
        "cut to the CA's own expiry",
        "Issued",
        short_lived_ca(),
        ready_after_all=True,
        then=warned_and_counted,
    ),
    "secret-of-another-type": Case(
        {"secretName": "bad-tls"}, OPERATOR, "bad-tls", "SecretConflict", foreign_secret("Opaque")
    ),
    "secret-of-another-certificate": Case(
        {"secretName": "bad-tls"}, OPERATOR, "bad-tls", "SecretConflict", first_owner
    ),
    "keystore-password-missing": Case(
        {"keystores": {"pkcs12": {"passwordSecretRef": {"name": "no-such-password"}}}},
        OPERATOR,
        "keystore password Secret {ns}/no-such-password",
        "IssuanceFailed",
    ),
}


def spec_for(namespace: str, changes: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "secretName": "bad-tls",
        "usage": "server",
        "dnsNames": [f"bad.{namespace}.svc"],
    }
    for name, value in changes.items():
        if value is None:
            spec.pop(name, None)
        else:
            spec[name] = value
    filled: dict[str, Any] = json.loads(json.dumps(spec).replace("{ns}", namespace))
    return filled


def apply(kubectl: Kubectl, namespace: str, spec: dict[str, Any]) -> Any:
    body = {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    # create, not apply: the last-applied annotation would double the size.
    return kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input_is_stopped_where_it_must_be_and_nothing_else_waits(
    operator: OperatorProcess,
    kubectl: Kubectl,
    kube_api: client.ApiClient,
    namespace: str,
    case: Case,
) -> None:
    if case.setup is not None:
        case.setup(kube_api, namespace)
    message = case.message.replace("{ns}", namespace)
    created = apply(kubectl, namespace, spec_for(namespace, case.spec))
    if case.stopped_by == API_SERVER:
        assert created.returncode != 0, "the API server took it"
        assert message in created.stderr, created.stderr
        assert get_certificate(kube_api, namespace, "bad") is None
    else:
        assert created.returncode == 0, created.stderr
        assert case.reason is not None
        body = wait_reason(kube_api, namespace, "bad", case.reason)
        ready = condition(body)
        assert ready is not None
        assert ready["status"] == ("True" if case.ready_after_all else "False"), ready
        assert message in ready["message"], ready["message"]
    if case.then is not None:
        case.then(kube_api, namespace, operator)

    good = certificate("good", "server", dnsNames=[f"good.{namespace}.svc"])
    create_certificate(kube_api, namespace, good)
    wait_ready(kube_api, namespace, "good", timeout=GOOD_WITHIN)
    assert operator.running
    assert operator.readiness() == (200, "ok\n")


def test_a_keystore_password_is_watched_a_new_one_re_encrypts_without_issuing(
    operator: OperatorProcess, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    body = certificate(
        "store",
        "server",
        dnsNames=[f"store.{namespace}.svc"],
        keystores={"pkcs12": {"passwordSecretRef": {"name": "store-password"}}},
    )
    create_certificate(kube_api, namespace, body)
    wait_reason(kube_api, namespace, "store", "IssuanceFailed")
    # The password Secret appears: issued at once, not at the next retry.
    put_secret(kube_api, namespace, "store-password", {"password": b"first"})
    appeared = time.monotonic()
    issued = wait_ready(kube_api, namespace, "store", timeout=GOOD_WITHIN)
    print(f"issued {time.monotonic() - appeared:.1f} s after the password Secret appeared")
    assert opens_with(secret_data(kube_api, namespace, "store-tls"), b"first", tmp_path)

    client.CoreV1Api(kube_api).patch_namespaced_secret(
        "store-password", namespace, {"data": {"password": base64.b64encode(b"second").decode()}}
    )
    changed = time.monotonic()
    wait_for(
        lambda: opens_with(secret_data(kube_api, namespace, "store-tls"), b"second", tmp_path),
        timeout=GOOD_WITHIN,
        what="the keystores encrypted with the new password",
    )
    print(f"re-encrypted {time.monotonic() - changed:.1f} s after the password changed")
    after = get_certificate(kube_api, namespace, "store")
    assert after is not None
    assert after["status"]["serialNumber"] == issued["status"]["serialNumber"], "not re-issued"
    assert after["status"]["revision"] == issued["status"]["revision"]


def opens_with(data: dict[str, bytes], password: bytes, directory: Path) -> bool:
    """openssl opens keystore.p12 with `password` (and finds the key in it)."""
    keystore = directory / "keystore.p12"
    keystore.write_bytes(data["keystore.p12"])
    opened = openssl(
        "pkcs12",
        "-in",
        str(keystore),
        "-passin",
        f"pass:{password.decode()}",
        "-nocerts",
        "-noenc",
        check=False,
    )
    return opened.returncode == 0 and "PRIVATE KEY" in opened.stdout
