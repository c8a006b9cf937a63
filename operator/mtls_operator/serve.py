"""`mtls-operator run`: the operator process."""

from __future__ import annotations

import argparse
import datetime
import logging
import os
from pathlib import Path

import kopf

from mtls_operator.cas import CARef
from mtls_operator.durations import parse_duration
from mtls_operator.handlers import build_registry
from mtls_operator.runtime import OperatorConfig, Runtime

DEFAULT_CA_SECRET_NAME = "mtls-operator-ca"
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


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
    parser.add_argument(
        "--metrics-port", type=int, default=8080, help="/metrics and /healthz port; 0 disables"
    )
    parser.add_argument(
        "--min-duration", default="1h", help="shortest spec.duration accepted (Go duration)"
    )
    parser.add_argument(
        "--workers", type=int, default=32, help="certificates reconciled concurrently"
    )
    parser.add_argument(
        "--reissue-rate",
        type=float,
        default=20.0,
        help="re-issuances per second after a CA swap or a wave of renewals",
    )
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("--verbose", action="store_true", help="log every reconciliation")


def operator_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return _SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "mtls-operator"


def config_from_arguments(args: argparse.Namespace) -> OperatorConfig:
    if args.cluster_ca_secret:
        namespace, slash, name = args.cluster_ca_secret.partition("/")
        if not slash or not namespace or not name:
            raise ValueError(
                f"--cluster-ca-secret {args.cluster_ca_secret!r}: expected NAMESPACE/NAME"
            )
        cluster_ca = CARef(namespace, name)
    else:
        cluster_ca = CARef(operator_namespace(), DEFAULT_CA_SECRET_NAME)
    try:
        min_duration = parse_duration(args.min_duration)
    except ValueError as err:
        raise ValueError(f"--min-duration: {err}") from None
    if min_duration <= datetime.timedelta(0):
        raise ValueError(f"--min-duration {args.min_duration!r}: must be positive")
    if args.workers < 1:
        raise ValueError(f"--workers {args.workers}: must be at least 1")
    if args.reissue_rate <= 0:
        raise ValueError(f"--reissue-rate {args.reissue_rate}: must be positive")
    return OperatorConfig(
        namespaces=tuple(args.namespaces),
        cluster_ca=cluster_ca,
        bootstrap_ca=args.bootstrap_ca,
        min_duration=min_duration,
        workers=args.workers,
        reissue_rate=args.reissue_rate,
        metrics_port=args.metrics_port,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_arguments(args)
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs every raw event it hands over; the reconciler logs what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    runtime = Runtime(config)
    kopf.run(
        registry=build_registry(runtime),
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        standalone=True,
    )
    return 0
