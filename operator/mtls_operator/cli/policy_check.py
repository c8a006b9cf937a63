"""`mtls-operator policy check`: offline, from the files of a GitOps
repository, whether MtlsCertificates would be allowed by the identity policy,
and by which rule. Pure: the same decision the operator makes, without a
cluster."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from mtls_operator.api.mtls_policy import POLICY_KIND, InvalidPolicy, PolicySpec, parse_policy
from mtls_operator.api.resources import KIND
from mtls_operator.api.spec import InvalidSpec, parse_spec
from mtls_operator.cli.parsers import add_files_argument
from mtls_operator.policy.identity import IdentityRules, verdicts
from mtls_operator.tenancy.store import IdentitySettings

# Kubernetes labels every namespace with its own name; policies may select on it.
NAME_LABEL = "kubernetes.io/metadata.name"
EXIT_REFUSED = 1


class PolicyCheckError(Exception):
    """A one-line message for the user."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_files_argument(
        parser, "MtlsCertificate YAML (several documents allowed; - for stdin); repeatable"
    )
    parser.add_argument(
        "-n", "--namespace", metavar="NS", help="the namespace (default: metadata.namespace)"
    )
    parser.add_argument(
        "--policy-file",
        action="append",
        default=[],
        metavar="FILE|DIR",
        help="MtlsPolicy YAML, or a directory of them; repeatable",
    )
    parser.add_argument(
        "--namespace-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label of the namespace, for the policies' namespaceSelector; repeatable",
    )
    parser.add_argument(
        "--cluster-domain",
        default="cluster.local",
        metavar="DOMAIN",
        help="the cluster's DNS domain (default: cluster.local)",
    )
    parser.add_argument(
        "--trust-domain", metavar="DOMAIN", help="SPIFFE trust domain (default: the cluster domain)"
    )


def check(args: argparse.Namespace) -> int:
    try:
        settings = IdentitySettings.parse("namespace", args.cluster_domain, args.trust_domain)
    except ValueError as err:
        raise PolicyCheckError(str(err)) from None
    policies = list(_policies(args.policy_file))
    labels = _labels(args.namespace_label)
    refused = False
    for certificate in _documents(args.filename, KIND):
        namespace = args.namespace or (certificate.get("metadata") or {}).get("namespace")
        if not namespace:
            raise PolicyCheckError("the certificate names no namespace: give -n NAMESPACE")
        name = (certificate.get("metadata") or {}).get("name", "?")
        selecting = tuple(
            p for p in policies if p.selector.matches({NAME_LABEL: namespace, **labels})
        )
        rules = settings.rules(namespace, selecting)
        refused |= not _report(f"{namespace}/{name}", certificate, rules)
    return EXIT_REFUSED if refused else 0


def _report(title: str, certificate: dict[str, Any], rules: IdentityRules) -> bool:
    try:
        spec = parse_spec(certificate.get("spec") or {}, datetime.timedelta(0))
    except InvalidSpec as err:
        print(f"{title}: invalid: {err}")
        return False
    if spec.ca_secret_name:
        print(f"{title}: allowed: signed by the namespace's own CA {spec.ca_secret_name!r}")
        return True
    judged = list(verdicts(spec.request, rules))
    allowed = all(v.allowed for v in judged)
    print(f"{title}: {'allowed' if allowed else 'refused (PolicyDenied)'}")
    for verdict in judged:
        mark = "ok  " if verdict.allowed else "NO  "
        print(f'  {mark}spec.{verdict.field} "{verdict.value}": {verdict.rule}')
    return allowed


def _policies(sources: list[str]) -> Iterator[PolicySpec]:
    for document in _documents(_expand(sources), POLICY_KIND):
        name = (document.get("metadata") or {}).get("name", "?")
        try:
            policy = parse_policy(name, document.get("spec") or {})
        except InvalidPolicy as err:
            # The operator lets an invalid policy grant nothing; say so and go on.
            print(f"MtlsPolicy {name}: grants nothing: {err}", file=sys.stderr)
            continue
        for entry in policy.ignored:
            print(f"MtlsPolicy {name}: this entry grants nothing: {entry}", file=sys.stderr)
        yield policy


def _expand(sources: list[str]) -> list[str]:
    files = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(str(p) for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(source)
    return files


def _documents(files: list[str], kind: str) -> Iterator[dict[str, Any]]:
    for file in files:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as err:
            raise PolicyCheckError(f"{file}: not YAML: {str(err).splitlines()[0]}") from None
        for document in documents:
            if isinstance(document, dict) and document.get("kind") == kind:
                yield document


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise PolicyCheckError(f"--namespace-label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels
