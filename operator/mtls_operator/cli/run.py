"""`mtls-operator run`: the operator process, with leader election and the
health and metrics endpoints around it."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path

import kopf
from kopf._core.engines import peering  # Identity, which kopf does not export

from mtls_operator import preflight
from mtls_operator.api.durations import parse_duration
from mtls_operator.api.mtls_policy import LabelSelector, parse_selector_string
from mtls_operator.app import Operator, OperatorConfig
from mtls_operator.authorities.store import CARef
from mtls_operator.pki.names import is_dns_name
from mtls_operator.podcertificates.controller import DEFAULT_SIGNER_NAME
from mtls_operator.policy.identity import IdentityMode
from mtls_operator.runtime.clock import SystemClock
from mtls_operator.runtime.collector import tune_collector
from mtls_operator.runtime.endpoints import start_endpoints
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.leader import LeaseElection
from mtls_operator.runtime.login import default_login
from mtls_operator.runtime.logs import OncePerCause
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.tenancy.store import IdentitySettings

logger = logging.getLogger(__name__)

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
    parser.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="work only while holding a Lease, so that several replicas are safe (default: on)",
    )
    parser.add_argument("--lease-name", default="mtls-operator", help="name of the Lease")
    parser.add_argument(
        "--lease-namespace", metavar="NS", help="namespace of the Lease (default: the operator's)"
    )
    _add_identity_arguments(parser)
    _add_pod_certificate_arguments(parser)
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text (default), or json: one object per line, for log collectors",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log at debug level (API retries, kopf, libraries)"
    )


def _add_pod_certificate_arguments(parser: argparse.ArgumentParser) -> None:
    """The PodCertificateRequest signer and the published trust bundles."""
    parser.add_argument(
        "--pod-signer",
        choices=["on", "off"],
        default="on",
        help="sign PodCertificateRequests of --pod-signer-name (default: on)",
    )
    parser.add_argument(
        "--pod-signer-name",
        default=DEFAULT_SIGNER_NAME,
        metavar="DOMAIN/PATH",
        help=f"the signer name pods ask for (default: {DEFAULT_SIGNER_NAME})",
    )
    parser.add_argument(
        "--pod-cert-max-duration",
        default="24h",
        help="the longest pod certificate, at least 1h (Go duration; default 24h)",
    )
    parser.add_argument(
        "--trust-bundle-namespace-selector",
        metavar="SELECTOR",
        help="keep a ConfigMap mtls-ca-bundle with the trust bundle in the namespaces with "
        "these labels (kubectl -l syntax; default: none)",
    )


def _add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    """The identity policy (docs/identity-policy.md)."""
    parser.add_argument(
        "--identity-policy",
        choices=[m.value for m in IdentityMode],
        default=IdentityMode.NAMESPACE.value,
        help="namespace (default): the cluster CA signs only identities of the certificate's "
        "own namespace, plus what MtlsPolicies grant; open: anything (single-tenant clusters)",
    )
    parser.add_argument(
        "--cluster-domain",
        default="cluster.local",
        help="the cluster's DNS domain: <svc>.<ns>.svc.<domain> names belong to <ns>",
    )
    parser.add_argument(
        "--trust-domain",
        help="SPIFFE trust domain of spiffe://<domain>/ns/<ns>/sa/<sa> "
        "(default: the cluster domain)",
    )


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
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace or operator_namespace(),
        lease_name=args.lease_name,
        identity=_identity_settings(args),
        pod_signer=args.pod_signer == "on",
        pod_signer_name=_signer_name(args.pod_signer_name),
        pod_certificate_max_duration=_pod_certificate_max_duration(args.pod_cert_max_duration),
        trust_bundle_namespaces=_namespace_selector(args.trust_bundle_namespace_selector),
    )


def _signer_name(text: str) -> str:
    domain, slash, path = text.partition("/")
    if not slash or not path or not is_dns_name(domain) or domain.endswith("kubernetes.io"):
        raise ValueError(
            f"--pod-signer-name {text!r}: expected DOMAIN/PATH outside kubernetes.io, "
            "such as example.com/pod-identity"
        )
    return text


def _pod_certificate_max_duration(text: str) -> datetime.timedelta:
    try:
        value = parse_duration(text)
    except ValueError as err:
        raise ValueError(f"--pod-cert-max-duration: {err}") from None
    if not datetime.timedelta(hours=1) <= value <= datetime.timedelta(days=91):
        raise ValueError(f"--pod-cert-max-duration {text!r}: must be from 1h to 2184h (91 days)")
    return value


def _namespace_selector(text: str | None) -> LabelSelector | None:
    if text is None:
        return None
    try:
        return parse_selector_string(text)
    except ValueError as err:
        raise ValueError(f"--trust-bundle-namespace-selector {err}") from None


def _identity_settings(args: argparse.Namespace) -> IdentitySettings:
    return IdentitySettings.parse(args.identity_policy, args.cluster_domain, args.trust_domain)


def run_operator(args: argparse.Namespace) -> int:
    config = config_from_arguments(args)
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(OncePerCause())
    if config.identity.mode is IdentityMode.OPEN:
        logger.warning(
            "--identity-policy=open: the cluster CA signs any identity any namespace asks for; "
            "use it only when every namespace is trusted alike"
        )
    tune_collector()
    return asyncio.run(_serve(config))


async def _serve(config: OperatorConfig) -> int:
    """Check what the cluster must provide, serve /healthz, /readyz and
    /metrics at once (a standby answers too), then lead for as long as this
    process holds the Lease, and campaign again when it loses it, until a
    signal. Losing the Lease stops every write at once; it is not an exit."""
    # Missing credentials are a configuration error: say so and stop, rather
    # than retry forever (an unreachable API server, later, is retried).
    await default_login()
    kube = Kube(default_login)
    try:
        found = await preflight.problems(kube, config)
        for problem in found:
            logger.error("cannot start: %s", problem)
        if found:
            return 1
        metrics = Metrics()
        state = _Terms()
        endpoints = (
            await start_endpoints(config.metrics_port, metrics, state.healthy, state.problems)
            if config.metrics_port
            else None
        )
        try:
            return await _lead_while_elected(config, kube, metrics, state)
        finally:
            if endpoints is not None:
                await endpoints.cleanup()
    finally:
        await kube.close()


class _Terms:
    """The operator of the current term, if this replica leads."""

    def __init__(self) -> None:
        self.operator: Operator | None = None

    def healthy(self) -> bool:
        return self.operator is None or self.operator.healthy()

    def problems(self) -> list[str]:
        """A standby is ready: it can take over."""
        return [] if self.operator is None else self.operator.runtime.problems()


async def _lead_while_elected(
    config: OperatorConfig, kube: Kube, metrics: Metrics, state: _Terms
) -> int:
    signalled = asyncio.Event()
    identity = _identity()
    election = (
        LeaseElection(
            kube, config.lease_namespace, config.lease_name, identity, clock=SystemClock()
        )
        if config.leader_election
        else None
    )
    try:
        while True:
            _on_signals(signalled.set)
            if election is not None:
                metrics.leader = False
                if not await _unless(signalled, election.acquire()):
                    return 0
                metrics.leader = True
            outcome = await _term(config, metrics, state, election, identity)
            if outcome is not LOST_LEASE:
                return outcome
            # Campaign again in this process: as leader or standby, with a
            # fresh runtime (nothing kept from the term that ended).
            logger.warning(
                "lost the Lease %s: stopped working, campaigning again", config.lease_name
            )
    finally:
        if election is not None:
            await election.release()


LOST_LEASE = -1


async def _term(
    config: OperatorConfig,
    metrics: Metrics,
    state: _Terms,
    election: LeaseElection | None,
    identity: str,
) -> int:
    """Run the operator until kopf stops (0 after a signal, 1 if it failed)
    or the Lease is lost (LOST_LEASE)."""
    operator = state.operator = Operator(config, default_login, metrics)
    stop = asyncio.Event()
    operating = asyncio.create_task(
        kopf.operator(
            registry=operator.registry(),
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=True,
            # Else kopf names itself after the user it runs as, which a uid without a
            # passwd entry (65532 in the image) does not have: getpass fails.
            identity=peering.Identity(identity),
            stop_flag=stop,
        ),
        name="kopf",
    )
    holding = asyncio.create_task(election.hold(), name="lease") if election else None
    try:
        done, _ = await asyncio.wait(
            {t for t in (operating, holding) if t is not None}, return_when=asyncio.FIRST_COMPLETED
        )
        if holding is not None and holding in done:
            # Another replica may lead now: no write from here on.
            operator.halt()
            metrics.leader = False
            metrics.forget_work()
            logger.error("stopping work: %s", holding.exception())
            stop.set()
            await asyncio.gather(operating, return_exceptions=True)
            return LOST_LEASE
        failure = operating.exception()
        if failure is not None:
            logger.error("stopping: the operator failed: %s", failure)
            return 1
        return 0
    finally:
        if holding is not None:
            holding.cancel()
        state.operator = None


def _on_signals(handler: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call `handler` (kopf installs its own while it runs)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, handler)


async def _unless(signalled: asyncio.Event, waiting: Coroutine[None, None, None]) -> bool:
    """Run `waiting`; False if a signal came first."""
    task = asyncio.create_task(waiting)
    stopper = asyncio.create_task(signalled.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    return False


def _identity() -> str:
    """The pod name (or host name) plus a random part: a restarted process
    is a new candidate, not the old holder."""
    return f"{socket.gethostname()}-{secrets.token_hex(3)}"
