"""`mtls-operator run`: the operator process. The flags are read into the
settings (`cli/settings.py`); this module sets up logging, checks what the
cluster must provide, serves the health and metrics endpoints, and hands
over to the runtime's terms of leadership."""

from __future__ import annotations

import argparse
import asyncio
import logging

import kopf

from mtls_operator import preflight
from mtls_operator.app import Operator, OperatorConfig
from mtls_operator.cli.settings import config_from_arguments
from mtls_operator.policy.identity import IdentityMode
from mtls_operator.runtime.clock import SystemClock
from mtls_operator.runtime.collector import tune_collector
from mtls_operator.runtime.crl_endpoint import CRLReader
from mtls_operator.runtime.endpoints import start_endpoints
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.leader import LeaseElection
from mtls_operator.runtime.login import default_login
from mtls_operator.runtime.logs import OncePerCause
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.runtime.terms import Candidacy, Terms, candidate_identity, lead_while_elected

logger = logging.getLogger(__name__)


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
        terms = Terms()
        endpoints = (
            await start_endpoints(
                config.metrics_port, metrics, terms.healthy, terms.problems, CRLReader(kube)
            )
            if config.metrics_port
            else None
        )
        try:
            return await lead_while_elected(
                lambda: Operator(config, default_login, metrics),
                config.namespaces,
                _candidacy(config, kube),
                metrics,
                terms,
            )
        finally:
            if endpoints is not None:
                await endpoints.cleanup()
    finally:
        await kube.close()


def _candidacy(config: OperatorConfig, kube: Kube) -> Candidacy:
    identity = candidate_identity()
    election = (
        LeaseElection(
            kube, config.lease_namespace, config.lease_name, identity, clock=SystemClock()
        )
        if config.leader_election
        else None
    )
    return Candidacy(identity, election, config.lease_name)
