"""cert-manager YAML converted to MtlsCertificates: the 21 example manifests
from cert-manager's docs and repository, a table of field mappings and
refusals, and the command's output, errors and exit statuses."""

from __future__ import annotations

import argparse
import copy
import datetime
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtls_operator.api.resources import API_VERSION, KIND
from mtls_operator.api.spec import parse_spec
from mtls_operator.cli import convert as convert_cli
from mtls_operator.convert import convert_documents

from support.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "tests" / "data" / "cert-manager"
NO_MINIMUM = datetime.timedelta(0)

# Each example: the MtlsCertificates it gives (namespace/name), and the
# fields refused (in the order reported).
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "01-full-example-all-fields.yaml": ([], ["spec.otherNames"]),
    "02-full-example-legacy.yaml": (["sandbox/example-com"], []),
    "03-ca-name-constraints.yaml": ([], ["spec.isCA", "spec.nameConstraints"]),
    "04-additional-output-formats.yaml": ([], ["metadata.name", "spec.commonName"]),
    "05-rotation-policy-always-fragment.yaml": ([], ["metadata.name", "spec.commonName"]),
    "06-selfsigned-bootstrap-ca.yaml": ([], ["spec.isCA"]),
    "07-selfsigned-issuer-and-clusterissuer.yaml": ([], []),
    "08-ca-issuer.yaml": ([], []),
    "09-literal-subject.yaml": ([], ["spec.literalSubject"]),
    "10-tutorial-rotation-always-revision-limit.yaml": (["www"], []),
    "11-rsa4096-pkcs8-rotation-never.yaml": (["default/test-revision-override"], []),
    "12-acme-dns01-wildcard.yaml": ([], ["spec.acme", "spec.issuerRef"]),
    "13-ed25519-selfsigned-ca.yaml": ([], ["spec.isCA"]),
    "14-jks-keystore-selfsigned-ca.yaml": ([], ["spec.isCA", "spec.keystores.jks"]),
    "15-vault-issuer-ref.yaml": ([], ["spec.commonName"]),
    "16-vault-issuer-serviceaccount.yaml": ([], ["spec.vault"]),
    "17-e2e-fixture-selfsigned-labels.yaml": (["default/test1", "default/test2"], []),
    "18-pomerium-server-client-auth.yaml": (
        ["pomerium/pomerium-cert", "pomerium/pomerium-redis-cert"],
        [],
    ),
    "19-design-notbefore-proposed-field.yaml": ([], ["spec.notBefore"]),
    "20-cmctl-convert-list.yaml": (["default/list-test-1"], ["metadata.name"]),
    "21-venafi-cloud-issuer-and-certificate.yaml": ([], ["spec.venafi", "spec.issuerRef"]),
}


def load(path: Path) -> list[object]:
    return list(yaml.safe_load_all(path.read_text()))


def title(document: dict[str, Any]) -> str:
    metadata = document["metadata"]
    return (
        f"{metadata['namespace']}/{metadata['name']}"
        if "namespace" in metadata
        else metadata["name"]
    )


def test_every_example_is_in_the_table() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXPECTED)
    for path in EXAMPLES.glob("*.yaml"):
        assert path.read_text().startswith("# Source: "), path.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_converts_or_is_refused(name: str) -> None:
    converted_names, refused_fields = EXPECTED[name]

    conversion = convert_documents(load(EXAMPLES / name))

    documents = [c.document for c in conversion.converted if c.document is not None]
    assert [title(d) for d in documents] == converted_names
    for document in documents:
        assert (document["apiVersion"], document["kind"]) == (API_VERSION, KIND)
        parse_spec(document["spec"], NO_MINIMUM)
    assert [r.field for r in conversion.refusals] == refused_fields
    for refusal in conversion.refusals:
        line = refusal.line()
        assert "\n" not in line
        assert f"{refusal.field} " in line, line


def test_ca_issuer_given_with_the_certificate_gives_ca_secret_name() -> None:
    documents = load(EXAMPLES / "08-ca-issuer.yaml") + load(
        EXAMPLES / "02-full-example-legacy.yaml"
    )

    conversion = convert_documents(documents)

    (issuer, certificate) = conversion.converted
    assert issuer.document is None
    assert "Secret ca-key-pair" in issuer.notes[0]
    assert certificate.document is not None
    assert certificate.document["spec"]["caSecretName"] == "ca-key-pair"
    assert conversion.refusals == []


def test_full_example_converted_field_by_field() -> None:
    """02 as the operator gets it: every field that has a meaning here."""
    documents = load(EXAMPLES / "08-ca-issuer.yaml") + load(
        EXAMPLES / "02-full-example-legacy.yaml"
    )

    (_, certificate) = convert_documents(documents).converted

    assert certificate.document == {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": "example-com", "namespace": "sandbox"},
        "spec": {
            "secretName": "example-com-tls",
            "usage": "both",
            "commonName": "example.com",
            "dnsNames": ["example.com", "www.example.com"],
            "ipAddresses": ["192.168.0.5"],
            "uris": ["spiffe://cluster.local/ns/sandbox/sa/example"],
            "subject": {"organizations": ["jetstack"]},
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "RSA", "size": 2048, "encoding": "PKCS1"},
            "caSecretName": "ca-key-pair",
            "secretTemplate": {
                "labels": {"my-secret-label": "foo"},
                "annotations": {"my-secret-annotation-1": "foo", "my-secret-annotation-2": "bar"},
            },
        },
    }


def test_full_example_without_other_names_keeps_its_keystore() -> None:
    """01 less the otherNames it is refused for: the pkcs12 keystore, emails."""
    (document,) = load(EXAMPLES / "01-full-example-all-fields.yaml")
    assert isinstance(document, dict)
    del document["spec"]["otherNames"]

    (certificate,) = convert_documents([document]).converted

    assert certificate.document is not None
    spec = certificate.document["spec"]
    assert spec["keystores"] == {
        "pkcs12": {"passwordSecretRef": {"name": "example-com-tls-keystore", "key": "password"}}
    }
    assert spec["emailAddresses"] == ["john.doe@cert-manager.io"]
    assert any("profile dropped" in note for note in certificate.notes)


BASE: dict[str, Any] = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Certificate",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {"secretName": "web-tls", "dnsNames": ["web.shop.svc"], "usages": ["server auth"]},
}


def certificate(**spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    for key, value in spec.items():
        if value is None:
            document["spec"].pop(key, None)
        else:
            document["spec"][key] = value
    return document


def converted_spec(document: dict[str, Any]) -> dict[str, Any]:
    conversion = convert_documents([document])
    assert conversion.refusals == [], [r.line() for r in conversion.refusals]
    (result,) = conversion.converted
    assert result.document is not None
    spec: dict[str, Any] = result.document["spec"]
    parse_spec(spec, NO_MINIMUM)
    return spec


RSA_DEFAULTS = {"algorithm": "RSA", "encoding": "PKCS1"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"usages": ["server auth"]}, {"usage": "server"}),
        ({"usages": ["client auth"]}, {"usage": "client"}),
        ({"usages": ["server auth", "client auth"]}, {"usage": "both"}),
        (
            {"usages": ["digital signature", "key encipherment", "client auth"]},
            {"usage": "client"},
        ),
        ({"usages": None}, {"usage": "both"}),
        ({"isCA": False}, {"usage": "server"}),
        (
            {"privateKey": {"algorithm": "ECDSA", "size": 384}},
            {"privateKey": {"encoding": "PKCS1", "algorithm": "ECDSA", "size": 384}},
        ),
        (
            {"privateKey": {"algorithm": "Ed25519", "encoding": "PKCS8"}},
            {"privateKey": {"algorithm": "Ed25519", "encoding": "PKCS8"}},
        ),
        (
            {"privateKey": {"rotationPolicy": "Never"}},
            {"privateKey": {**RSA_DEFAULTS, "rotationPolicy": "Never"}},
        ),
        ({}, {"privateKey": RSA_DEFAULTS}),
        (
            {"duration": "24h0m0s", "renewBefore": "8h"},
            {"duration": "24h0m0s", "renewBefore": "8h"},
        ),
        ({"renewBeforePercentage": 25}, {"renewBeforePercentage": 25}),
        ({"commonName": "web"}, {"commonName": "web"}),
        ({"ipAddresses": ["10.0.0.1"]}, {"ipAddresses": ["10.0.0.1"]}),
        (
            {"uris": ["spiffe://cluster.local/ns/shop/sa/web"]},
            {"uris": ["spiffe://cluster.local/ns/shop/sa/web"]},
        ),
        ({"emailAddresses": ["ops@shop.example"]}, {"emailAddresses": ["ops@shop.example"]}),
        (
            {"subject": {"organizations": ["Shop"], "countries": ["DE"], "localities": ["Berlin"]}},
            {"subject": {"organizations": ["Shop"], "countries": ["DE"], "localities": ["Berlin"]}},
        ),
        (
            {"secretTemplate": {"labels": {"team": "web"}, "annotations": {"owner": "ops"}}},
            {"secretTemplate": {"labels": {"team": "web"}, "annotations": {"owner": "ops"}}},
        ),
        (
            {"additionalOutputFormats": [{"type": "CombinedPEM"}, {"type": "DER"}]},
            {"additionalOutputFormats": [{"type": "CombinedPEM"}, {"type": "DER"}]},
        ),
        (
            {
                "keystores": {
                    "pkcs12": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}}
                }
            },
            {"keystores": {"pkcs12": {"passwordSecretRef": {"name": "p", "key": "k"}}}},
        ),
        ({"keystores": {"pkcs12": {"create": False}}}, {"keystores": None}),
        ({"keystores": {"jks": {"create": False}}}, {"keystores": None}),
        (
            {"revisionHistoryLimit": 3, "encodeUsagesInRequest": True},
            {"revisionHistoryLimit": None},
        ),
        ({"issuerRef": {"name": "elsewhere", "kind": "ClusterIssuer"}}, {"caSecretName": None}),
    ],
)
def test_field_mapping(given: dict[str, Any], expected: dict[str, Any]) -> None:
    spec = converted_spec(certificate(**given))

    for key, value in expected.items():
        assert spec.get(key) == value, key


@pytest.mark.parametrize(
    ("given", "field", "reason"),
    [
        ({"isCA": True}, "spec.isCA", "leaf certificates only"),
        ({"usages": ["server auth", "code signing"]}, "spec.usages[1]", "only server auth"),
        ({"usages": ["digital signature"]}, "spec.usages", "must include server auth"),
        ({"literalSubject": "CN=web"}, "spec.literalSubject", "builds the subject"),
        ({"otherNames": [{"oid": "1.2.3", "utf8Value": "x"}]}, "spec.otherNames", "otherName"),
        ({"nameConstraints": {"critical": True}}, "spec.nameConstraints", "CA certificates"),
        ({"notBefore": "2024-10-01T10:00:00Z"}, "spec.notBefore", "not a field"),
        ({"signatureAlgorithm": "SHA512WithRSA"}, "spec.signatureAlgorithm", "signature algorithm"),
        (
            {"subject": {"streetAddresses": ["Main St 1"]}},
            "spec.subject.streetAddresses",
            "attribute",
        ),
        ({"subject": {"serialNumber": "42"}}, "spec.subject.serialNumber", "attribute"),
        ({"privateKey": {"algorithm": "RSA", "size": 8192}}, "spec.privateKey.size", "2048"),
        (
            {"additionalOutputFormats": [{"type": "PEM"}]},
            "spec.additionalOutputFormats[0].type",
            "CombinedPEM or DER",
        ),
        (
            {
                "keystores": {
                    "jks": {"create": True, "passwordSecretRef": {"name": "p", "key": "k"}}
                }
            },
            "spec.keystores.jks",
            "no JKS",
        ),
        (
            {"keystores": {"pkcs12": {"create": True, "password": "hunter2"}}},
            "spec.keystores.pkcs12.password",
            "from a Secret",
        ),
        (
            {
                "keystores": {
                    "pkcs12": {
                        "passwordSecretRef": {"name": "p", "key": "k"},
                        "profile": "LegacyRC2",
                    }
                }
            },
            "spec.keystores.pkcs12.profile",
            "Modern2023",
        ),
        (
            {"keystores": {"pkcs12": {"create": True}}},
            "spec.keystores.pkcs12.passwordSecretRef",
            "required",
        ),
        (
            {"issuerRef": {"name": "vault", "group": "cert-manager.k8s.cloudflare.com"}},
            "spec.issuerRef.group",
            "external issuer",
        ),
        (
            {"issuerRef": {"name": "x", "kind": "AWSPCAClusterIssuer"}},
            "spec.issuerRef.kind",
            "Issuer or ClusterIssuer",
        ),
        ({"dnsNames": ["Not A Name"]}, "spec.dnsNames[0]", "label"),
        ({"dnsNames": None}, "spec.commonName", "at least one"),
    ],
)
def test_refusal(given: dict[str, Any], field: str, reason: str) -> None:
    conversion = convert_documents([certificate(**given)])

    assert conversion.converted == []
    (refusal,) = conversion.refusals
    assert refusal.field == field
    line = refusal.line()
    assert line.startswith(f"Certificate shop/web: {field} ")
    assert reason in line
    assert "\n" not in line


def test_literal_keystore_password_is_never_shown() -> None:
    document = certificate(keystores={"pkcs12": {"create": True, "password": "hunter2"}})

    (refusal,) = convert_documents([document]).refusals

    assert "hunter2" not in refusal.line()


@pytest.mark.parametrize(
    ("issuer_spec", "field", "reason"),
    [
        ({"acme": {"server": "https://acme.example"}}, "spec.issuerRef", "an ACME issuer"),
        ({"vault": {"path": "pki"}}, "spec.issuerRef", "a Vault issuer"),
        ({"venafi": {"zone": "x"}}, "spec.issuerRef", "a Venafi issuer"),
    ],
)
def test_certificate_of_an_issuer_without_ca_secret_is_refused(
    issuer_spec: dict[str, Any], field: str, reason: str
) -> None:
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": "them", "namespace": "shop"},
        "spec": issuer_spec,
    }
    document = certificate(issuerRef={"name": "them"})

    conversion = convert_documents([document, issuer])

    assert [r.field for r in conversion.refusals] == [field, f"spec.{next(iter(issuer_spec))}"]
    assert reason in conversion.refusals[0].line()


def test_cluster_issuer_ca_secret_comes_with_copy_instructions() -> None:
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "ClusterIssuer",
        "metadata": {"name": "corp-ca"},
        "spec": {"ca": {"secretName": "corp-ca-key-pair"}},
    }
    document = certificate(issuerRef={"name": "corp-ca", "kind": "ClusterIssuer"})

    (converted, note) = convert_documents([document, issuer]).converted

    assert converted.document is not None
    assert converted.document["spec"]["caSecretName"] == "corp-ca-key-pair"
    assert "kubectl get secret corp-ca-key-pair -n cert-manager" in note.notes[0]
    assert "--cluster-ca-secret cert-manager/corp-ca-key-pair" in note.notes[0]


def test_namespaced_issuer_of_another_namespace_is_not_used() -> None:
    """An Issuer is namespaced: a Certificate elsewhere cannot use its Secret."""
    issuer = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": "ca", "namespace": "other"},
        "spec": {"ca": {"secretName": "other-ca"}},
    }

    conversion = convert_documents([certificate(issuerRef={"name": "ca"}), issuer])

    converted = [c for c in conversion.converted if c.document is not None]
    assert converted[0].document is not None
    assert "caSecretName" not in converted[0].document["spec"]
    assert "was not in the input" in converted[0].notes[0]


def test_old_api_versions_and_other_kinds_are_refused() -> None:
    old = {**certificate(), "apiVersion": "cert-manager.io/v1alpha2"}
    request = {**certificate(), "kind": "CertificateRequest"}

    conversion = convert_documents([old, request])

    assert [r.field for r in conversion.refusals] == ["apiVersion", "kind"]
    assert "cmctl convert" in conversion.refusals[0].line()


def test_metadata_keeps_labels_and_own_annotations() -> None:
    document = certificate()
    document["metadata"]["labels"] = {"app": "web"}
    document["metadata"]["annotations"] = {
        "team.example/owner": "ops",
        "cert-manager.io/issue-temporary-certificate": "true",
    }
    document["status"] = {"conditions": []}

    (converted,) = convert_documents([document]).converted

    assert converted.document is not None
    assert converted.document["metadata"] == {
        "name": "web",
        "namespace": "shop",
        "labels": {"app": "web"},
        "annotations": {"team.example/owner": "ops"},
    }
    assert "status" not in converted.document


# --- The command. ---


def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="mtls-operator convert")
    convert_cli.add_arguments(parser)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = convert_cli.convert(parser.parse_args(list(argv)))
    out, err = capsys.readouterr()
    return status, out, err


def test_command_converts_with_notes_as_comments(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(
        capsys,
        monkeypatch,
        "-f",
        str(EXAMPLES / "08-ca-issuer.yaml"),
        "-f",
        str(EXAMPLES / "02-full-example-legacy.yaml"),
    )

    assert (status, err) == (0, "")
    documents = [d for d in yaml.safe_load_all(out) if d is not None]
    assert [d["metadata"]["name"] for d in documents] == ["example-com"]
    assert "# - Issuer sandbox/ca-issuer is a ca issuer" in out
    assert "converted from cert-manager Certificate sandbox/example-com" in out


def test_command_refusal_is_one_line_and_exit_1_with_the_rest_written(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(capsys, monkeypatch, "-f", str(EXAMPLES / "20-cmctl-convert-list.yaml"))

    assert status == 1
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(out) if d] == ["list-test-1"]
    assert err.splitlines() == [
        "mtls-operator convert: refused: Certificate default/list-test-1: metadata.name "
        '"list-test-1": a second Certificate of that name in the input; the later one would '
        "replace the first"
    ]


def test_command_skips_other_kinds_on_stderr_and_prints_no_secret_data(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = run(
        capsys, monkeypatch, "-f", str(EXAMPLES / "14-jks-keystore-selfsigned-ca.yaml")
    )

    assert status == 1
    assert "mtls-operator convert: skipped: Namespace sandbox: not a cert-manager object" in err
    assert "mtls-operator convert: skipped: Secret sandbox/jkssecret:" in err
    assert "YWJjMTIzCg==" not in out + err


def test_command_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = run(capsys, monkeypatch, "-f", "-", stdin=yaml.safe_dump(certificate()))

    assert status == 0
    (document,) = [d for d in yaml.safe_load_all(out) if d]
    assert document["spec"]["usage"] == "server"


@pytest.mark.parametrize(
    ("stdin", "argv", "message"),
    [
        ("", ["-f", "/nonexistent/cert.yaml"], "/nonexistent/cert.yaml: No such file or directory"),
        ("kind: [Certificate\n", ["-f", "-"], "-: not YAML (line 2): expected ',' or ']'"),
    ],
)
def test_command_unreadable_input_is_exit_2_in_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stdin: str,
    argv: list[str],
    message: str,
) -> None:
    status, out, err = run(capsys, monkeypatch, *argv, stdin=stdin)

    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1
    assert err.startswith(f"mtls-operator convert: error: {message}")


def test_command_without_a_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="mtls-operator convert")
    convert_cli.add_arguments(parser)

    with pytest.raises(SystemExit) as exited:
        parser.parse_args([])

    assert exited.value.code == 2
    assert "-f/--filename" in capsys.readouterr().err


def test_command_registers_with_help_and_examples() -> None:
    parser = argparse.ArgumentParser(prog="mtls-operator")
    convert_cli.add_convert_command(parser.add_subparsers())

    args = parser.parse_args(["convert", "-f", "x.yaml"])

    assert args.command is convert_cli.convert
    assert convert_cli.EXAMPLES
    assert all("mtls-operator convert -f" in line for line in convert_cli.EXAMPLES)


def test_every_flag_has_help() -> None:
    parser = argparse.ArgumentParser()
    convert_cli.add_arguments(parser)

    flags = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]

    assert flags
    assert all(a.help for a in flags)
