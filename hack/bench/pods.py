"""The pod-certificate phase, in the default scenario and alone as scenario
`pods`: PodCertificateRequests posted together, as kubelets post them,
against a bare client posting the same and answering each with one status
write."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable

from mtls_operator.api.pod_certificates import pod_certificate_requests_path

from bench.figures import Figures, per_second
from bench.metrics import POD_CERTIFICATE_RESOURCES, api_writes, operator_counter
from bench.parallel import ROUNDS, in_parallel, in_round_order
from bench.pod_requests import bare_signer, observed, pods_on_a_node, request_body, stub_requests
from bench.stage import Stage

NAMESPACE = "bench"
PODS_BASELINE_NAMESPACE = "bench-pods-baseline"


async def pod_certificates(stage: Stage, figures: Figures, count: int, namespace: str) -> None:
    """`count` requests posted together, ROUNDS times each by the operator's
    kubelets and the bare client, in an order that flips every round, the
    best of each."""
    kube, kubectl = stage.kube, stage.kubectl
    stubs = stub_requests(count)
    node, pods = await pods_on_a_node(kube, PODS_BASELINE_NAMESPACE)
    bare_bodies = [request_body(pods[i % len(pods)], node, stubs[i]) for i in range(count)]
    node, pods = await pods_on_a_node(kube, namespace)
    bodies = [request_body(pods[i % len(pods)], node, stubs[i]) for i in range(count)]
    path = pod_certificate_requests_path(namespace)

    def post_all() -> Awaitable[float]:
        return in_parallel(count, lambda i: kube.create(path, bodies[i]))

    bare_rates: list[float] = []
    times: list[float] = []
    writes = 0

    async def bare_round(total: int) -> None:
        bare_rates.append(await bare_signer(kube, PODS_BASELINE_NAMESPACE, bare_bodies, total))

    async def operator_round(total: int) -> None:
        nonlocal writes
        writes_before = api_writes(kubectl, POD_CERTIFICATE_RESOURCES)
        times.append(await observed(kube, namespace, total, post_all))
        await asyncio.sleep(2)
        writes += api_writes(kubectl, POD_CERTIFICATE_RESOURCES) - writes_before - count

    for round_number in range(ROUNDS):
        for run_round in in_round_order((bare_round, operator_round), round_number):
            await run_round(count * (round_number + 1))
    note_pod_figures(stage, figures, count=count, bare_rates=bare_rates, times=times, writes=writes)


def note_pod_figures(
    stage: Stage,
    figures: Figures,
    *,
    count: int,
    bare_rates: list[float],
    times: list[float],
    writes: int,
) -> None:
    bare, best = max(bare_rates), min(times)
    issued = operator_counter(
        stage.operator, "mtls_operator_pod_certificate_requests_total", outcome="Issued"
    )
    rate = count / best
    figures.note(
        f"{count} PodCertificateRequests posted together: all Issued",
        f"{best:.1f} s",
        f"{rate:.0f}/s = {rate / bare:.0%} of a bare client posting and answering "
        f"({bare:.0f}/s); target >= 80 %",
    )
    figures.note(
        "pod certificate runs, operator and bare",
        per_second([count / t for t in times]),
        "bare " + per_second(bare_rates),
    )
    figures.note(
        "write requests per pod certificate",
        f"{writes / max(issued, 1):.2f}",
        f"{writes} status writes for {issued:.0f} issued; target 1",
    )
    figures.note_memory("operator RSS after the pod certificates", stage.operator.memory_kib())


async def run(args: argparse.Namespace, figures: Figures) -> None:
    """Pod certificates alone."""
    stage = Stage("pods", [NAMESPACE, PODS_BASELINE_NAMESPACE], ["--namespace", NAMESPACE])
    try:
        stage.operator.start()
        await pod_certificates(stage, figures, args.pod_requests, NAMESPACE)
    finally:
        await stage.close()
