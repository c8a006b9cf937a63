"""`mtls-operator run`'s flags, read into the one settings object,
`OperatorConfig`. Each default is the config's own: a flag left out is a
field left at its default, and the help shows that default."""

from __future__ import annotations

import argparse
import datetime
import os
import urllib.parse
from pathlib import Path
from typing import Any

from mtls_operator.api.durations import format_duration, parse_duration
from mtls_operator.api.mtls_policy import LabelSelector, parse_selector_string
from mtls_operator.app import DEFAULT_NAMESPACE, OperatorConfig
from mtls_operator.authorities.store import CARef
from mtls_operator.pki.names import is_dns_name
from mtls_operator.policy.crl import CRLSettings
from mtls_operator.policy.identity import IdentityMode
from mtls_operator.tenancy.store import IdentitySettings

DEFAULT_CA_SECRET_NAME = "mtls-operator-ca"
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
_DEFAULT = OperatorConfig
POD_CERTIFICATE_DURATIONS = (datetime.timedelta(hours=1), datetime.timedelta(days=91))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        metavar="NS",
        help="serve only this namespace (repeatable)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="serve every namespace (default)"
    )
    parser.add_argument(
        "--cluster-ca-secret",
        metavar="NS/NAME",
        help=f"cluster CA Secret (default: {DEFAULT_CA_SECRET_NAME} in the operator's namespace)",
    )
    parser.add_argument(
        "--bootstrap-ca", action="store_true", help="create a self-signed cluster CA if missing"
    )
    _add_work_arguments(parser)
    _add_leadership_arguments(parser)
    _add_identity_arguments(parser)
    _add_pod_certificate_arguments(parser)
    _add_workload_arguments(parser)
    _add_crl_arguments(parser)
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text (default), or json: one object per line, for log collectors",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log at debug level (API retries, kopf, libraries)"
    )


def _add_work_arguments(parser: argparse.ArgumentParser) -> None:
    """How much the operator does at once, and what it accepts."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        help=f"/metrics and /healthz port; 0 disables (default: {_DEFAULT.metrics_port})",
    )
    parser.add_argument(
        "--min-duration",
        help="shortest spec.duration accepted (Go duration; default: "
        f"{format_duration(_DEFAULT.min_duration)})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help=f"certificates reconciled concurrently (default: {_DEFAULT.workers})",
    )
    parser.add_argument(
        "--reissue-rate",
        type=float,
        help="re-issuances per second after a CA swap or a wave of renewals "
        f"(default: {_DEFAULT.reissue_rate:g})",
    )


def _add_leadership_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        help="work only while holding a Lease, so that several replicas are safe "
        f"(default: {_on_off(_DEFAULT.leader_election)})",
    )
    parser.add_argument("--lease-name", help=f"name of the Lease (default: {_DEFAULT.lease_name})")
    parser.add_argument(
        "--lease-namespace", metavar="NS", help="namespace of the Lease (default: the operator's)"
    )


def _add_pod_certificate_arguments(parser: argparse.ArgumentParser) -> None:
    """The PodCertificateRequest signer and the published trust bundles."""
    parser.add_argument(
        "--pod-signer",
        choices=["on", "off"],
        help="sign PodCertificateRequests of --pod-signer-name "
        f"(default: {_on_off(_DEFAULT.pod_signer)})",
    )
    parser.add_argument(
        "--pod-signer-name",
        metavar="DOMAIN/PATH",
        help=f"the signer name pods ask for (default: {_DEFAULT.pod_signer_name})",
    )
    shortest = format_duration(POD_CERTIFICATE_DURATIONS[0])
    parser.add_argument(
        "--pod-cert-max-duration",
        help=f"the longest pod certificate, at least {shortest} (Go duration; default "
        f"{format_duration(_DEFAULT.pod_certificate_max_duration)})",
    )
    parser.add_argument(
        "--trust-bundle-namespace-selector",
        metavar="SELECTOR",
        help="keep a ConfigMap mtls-ca-bundle with the trust bundle in the namespaces with "
        "these labels (kubectl -l syntax; default: none)",
    )


def _add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """Workloads that ask to be rolled when what they mount changes (docs/workloads.md)."""
    parser.add_argument(
        "--workload-rolls",
        action=argparse.BooleanOptionalAction,
        help="roll the Deployments, StatefulSets and DaemonSets annotated mtls.dev/reload=true "
        "when a certificate or trust bundle they mount changes; off, no workload is watched "
        f"(default: {_on_off(_DEFAULT.workload_rolls)})",
    )
    parser.add_argument(
        "--workload-roll-rate",
        type=float,
        metavar="PER_SECOND",
        help="workloads rolled per second, operator-wide "
        f"(default: {_DEFAULT.workload_roll_rate:g})",
    )
    parser.add_argument(
        "--workload-roll-burst",
        type=int,
        metavar="N",
        help="workloads rolled at once before --workload-roll-rate spaces them out "
        f"(default: {_DEFAULT.workload_roll_burst})",
    )
    parser.add_argument(
        "--workload-roll-window",
        metavar="DURATION",
        help="changes this close together roll a workload once (Go duration; default: "
        f"{format_duration(_DEFAULT.workload_roll_window)})",
    )


def _add_crl_arguments(parser: argparse.ArgumentParser) -> None:
    """Each CA's certificate revocation list (docs/revocation.md)."""
    parser.add_argument(
        "--crl-validity",
        metavar="DURATION",
        help="how long a signed CRL is valid, thisUpdate to nextUpdate (Go duration; "
        f"default: {format_duration(_DEFAULT.crl.validity)})",
    )
    parser.add_argument(
        "--crl-refresh-before",
        metavar="DURATION",
        help="sign a CRL again this long before its nextUpdate (Go duration; default: "
        f"{format_duration(_DEFAULT.crl.refresh_before)})",
    )
    parser.add_argument(
        "--crl-url",
        metavar="URL",
        help="the operator's http:// URL as clients reach it (such as "
        "http://mtls-operator-metrics.mtls-operator.svc:8080): new certificates name "
        "URL/crl/<CA namespace>/<CA Secret>.crl as their CRL Distribution Point "
        "(default: none)",
    )


def _add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    """The identity policy (docs/identity-policy.md)."""
    parser.add_argument(
        "--identity-policy",
        choices=[m.value for m in IdentityMode],
        help="namespace (default): the cluster CA signs only identities of the certificate's "
        "own namespace, plus what MtlsPolicies grant; open: anything (single-tenant clusters)",
    )
    parser.add_argument(
        "--cluster-domain",
        help="the cluster's DNS domain: <svc>.<ns>.svc.<domain> names belong to <ns> "
        f"(default: {_DEFAULT.identity.cluster_domain})",
    )
    parser.add_argument(
        "--trust-domain",
        help="SPIFFE trust domain of spiffe://<domain>/ns/<ns>/sa/<sa> "
        "(default: the cluster domain)",
    )


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def operator_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return DEFAULT_NAMESPACE


def config_from_arguments(args: argparse.Namespace) -> OperatorConfig:
    """The settings the flags give; a flag left out leaves the default.
    Raises ValueError naming the flag."""
    given: dict[str, Any] = {
        "min_duration": _min_duration(args.min_duration),
        "workers": _at_least_one("--workers", args.workers),
        "reissue_rate": _positive_rate("--reissue-rate", args.reissue_rate),
        "metrics_port": args.metrics_port,
        "leader_election": args.leader_election,
        "lease_name": args.lease_name,
        "pod_signer": None if args.pod_signer is None else args.pod_signer == "on",
        "pod_signer_name": _signer_name(args.pod_signer_name),
        "pod_certificate_max_duration": _pod_certificate_max_duration(args.pod_cert_max_duration),
        "trust_bundle_namespaces": _namespace_selector(args.trust_bundle_namespace_selector),
        "workload_rolls": args.workload_rolls,
        "workload_roll_rate": _positive_rate("--workload-roll-rate", args.workload_roll_rate),
        "workload_roll_burst": _at_least_one("--workload-roll-burst", args.workload_roll_burst),
        "workload_roll_window": _workload_roll_window(args.workload_roll_window),
        "crl": _crl_settings(args.crl_validity, args.crl_refresh_before),
        "crl_url": _crl_url(args.crl_url),
    }
    return OperatorConfig(
        namespaces=tuple(args.namespaces),
        cluster_ca=cluster_ca_ref(args.cluster_ca_secret, "--cluster-ca-secret"),
        bootstrap_ca=args.bootstrap_ca,
        lease_namespace=args.lease_namespace or operator_namespace(),
        identity=_identity_settings(args),
        **{name: value for name, value in given.items() if value is not None},
    )


def cluster_ca_ref(text: str | None, flag: str) -> CARef:
    """NAMESPACE/NAME, or the default cluster CA Secret when `text` is empty."""
    if not text:
        return CARef(operator_namespace(), DEFAULT_CA_SECRET_NAME)
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name:
        raise ValueError(f"{flag} {text!r}: expected NAMESPACE/NAME")
    return CARef(namespace, name)


def _flag_duration(flag: str, text: str) -> datetime.timedelta:
    try:
        return parse_duration(text)
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None


def _min_duration(text: str | None) -> datetime.timedelta | None:
    if text is None:
        return None
    value = _flag_duration("--min-duration", text)
    if value <= datetime.timedelta(0):
        raise ValueError(f"--min-duration {text!r}: must be positive")
    return value


def _at_least_one(flag: str, value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ValueError(f"{flag} {value}: must be at least 1")
    return value


def _positive_rate(flag: str, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise ValueError(f"{flag} {value}: must be positive")
    return value


def _workload_roll_window(text: str | None) -> datetime.timedelta | None:
    if text is None:
        return None
    value = _flag_duration("--workload-roll-window", text)
    if value < datetime.timedelta(0):
        raise ValueError(f"--workload-roll-window {text!r}: must not be negative")
    return value


def _crl_url(text: str | None) -> str | None:
    if text is None:
        return None
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme != "http" or not parsed.hostname or parsed.query or parsed.fragment:
        # RFC 5280 4.2.1.13: fetched over plain HTTP (a CRL is signed, and
        # checking an https server's certificate could need that very CRL).
        raise ValueError(f"--crl-url {text!r}: expected an http:// URL with a host")
    return text.rstrip("/")


def _crl_settings(validity: str | None, refresh_before: str | None) -> CRLSettings | None:
    if validity is None and refresh_before is None:
        return None
    defaults = _DEFAULT.crl
    given = {
        "validity": defaults.validity
        if validity is None
        else _flag_duration("--crl-validity", validity),
        "refresh_before": defaults.refresh_before
        if refresh_before is None
        else _flag_duration("--crl-refresh-before", refresh_before),
    }
    try:
        return CRLSettings(**given)
    except ValueError as err:
        raise ValueError(f"--crl-validity/--crl-refresh-before: {err}") from None


def _signer_name(text: str | None) -> str | None:
    if text is None:
        return None
    domain, slash, path = text.partition("/")
    if not slash or not path or not is_dns_name(domain) or domain.endswith("kubernetes.io"):
        raise ValueError(
            f"--pod-signer-name {text!r}: expected DOMAIN/PATH outside kubernetes.io, "
            "such as example.com/pod-identity"
        )
    return text


def _pod_certificate_max_duration(text: str | None) -> datetime.timedelta | None:
    if text is None:
        return None
    value = _flag_duration("--pod-cert-max-duration", text)
    shortest, longest = POD_CERTIFICATE_DURATIONS
    if not shortest <= value <= longest:
        raise ValueError(
            f"--pod-cert-max-duration {text!r}: must be from {format_duration(shortest)} to "
            f"{format_duration(longest)} ({longest.days} days)"
        )
    return value


def _namespace_selector(text: str | None) -> LabelSelector | None:
    if text is None:
        return None
    try:
        return parse_selector_string(text)
    except ValueError as err:
        raise ValueError(f"--trust-bundle-namespace-selector {err}") from None


def _identity_settings(args: argparse.Namespace) -> IdentitySettings:
    mode, domain = args.identity_policy, args.cluster_domain
    return IdentitySettings.parse(
        _DEFAULT.identity.mode.value if mode is None else mode,
        _DEFAULT.identity.cluster_domain if domain is None else domain,
        args.trust_domain,
    )
