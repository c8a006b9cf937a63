"""Scenario `rolls`: a renewal storm under workloads that cannot reload.
1,000 certificates are mounted by 200 Deployments that follow reloads
(`mtls.dev/reload`, five certificates each, no replicas: the control plane
has no node, and a rollout of no pods is done at once), and all of them are
renewed together, as `kubectl mtls renew --all` asks. It measures:
- how often each Deployment was rolled (the target: once, for the change);
- the busiest roll rate over any 10 s, against what --workload-roll-rate
  and its burst allow;
- the operator's writes for the rolls (patches and Events) per renewal."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.resources import RENEW_REQUESTED_ANNOTATION, certificates_path
from mtls_operator.api.workloads import (
    MOUNTED_DIGEST_ANNOTATION,
    RELOAD_ANNOTATION,
    RESTARTED_FOR_ANNOTATION,
    WorkloadKind,
    workloads_path,
)
from mtls_operator.app import OperatorConfig
from mtls_operator.policy.renewal import renewal_request
from mtls_operator.runtime.kube import Kube
from mtls_operator.workloads.rolls import ROLLED_A_WORKLOAD, ROLLED_FOR_CERTIFICATE

from bench.background import Background, follow
from bench.figures import Figures
from bench.metrics import operator_counter
from bench.parallel import in_parallel
from bench.ready_watch import ReadyWatch
from bench.stage import Stage

NAMESPACE = "rolls"
PREFIX = "cert"
WINDOW_SECONDS = 10
# Once every Deployment was rolled, how long no further roll must come
# before the storm counts as over: the coalescing window, and a margin.
QUIET_SECONDS = OperatorConfig.workload_roll_window.total_seconds() + 10
DEPLOYMENTS = workloads_path(WorkloadKind.DEPLOYMENT, NAMESPACE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rolls-certificates", type=int, default=1000, help="rolls: certificates renewed"
    )
    parser.add_argument(
        "--rolls-deployments",
        type=int,
        default=200,
        help="rolls: Deployments following reloads, mounting the certificates in equal shares",
    )


def deployment(index: int, secrets: list[str]) -> dict[str, Any]:
    labels = {"app": f"app-{index}"}
    volumes = [{"name": f"tls-{n}", "secret": {"secretName": s}} for n, s in enumerate(secrets)]
    container = {
        "name": "app",
        "image": "registry.invalid/app:1",
        "volumeMounts": [{"name": v["name"], "mountPath": f"/etc/{v['name']}"} for v in volumes],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"app-{index}",
            "labels": labels,
            "annotations": {RELOAD_ANNOTATION: "true"},
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": volumes},
            },
        },
    }


def restarted_for(body: dict[str, Any]) -> str | None:
    template = (body.get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(
        RESTARTED_FOR_ANNOTATION
    )
    return str(value) if value is not None else None


class Rolls(Background):
    """Follows the namespace's Deployments and notes when each was rolled:
    its pod template seen with a new digest."""

    def __init__(self, kube: Kube) -> None:
        super().__init__()
        self.kube = kube
        self.rolled: dict[str, list[float]] = {}
        self.recorded: set[str] = set()
        self._digests: dict[str, str | None] = {}

    async def _run(self) -> None:
        await follow(self.kube, DEPLOYMENTS, self._note)

    def _note(self, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        name = str(metadata.get("name"))
        if MOUNTED_DIGEST_ANNOTATION in (metadata.get("annotations") or {}):
            self.recorded.add(name)
        digest = restarted_for(obj)
        if name in self._digests and digest != self._digests[name]:
            self.rolled.setdefault(name, []).append(time.monotonic())
        self._digests[name] = digest

    def moments(self) -> list[float]:
        return sorted(at for times in self.rolled.values() for at in times)


async def until(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace, figures: Figures) -> None:
    count, deployments = args.rolls_certificates, args.rolls_deployments
    share = count // deployments
    stage = Stage("rolls", [NAMESPACE], ["--namespace", NAMESPACE])
    ready = ReadyWatch(stage.kube, NAMESPACE)
    rolls = Rolls(stage.kube)
    try:
        await asyncio.sleep(2)  # discovery of the new kind
        stage.operator.start()
        ready.start()
        await stage.create(NAMESPACE, count, PREFIX)
        await ready.wait(count, timeout=1800)
        # The Deployments after their Secrets: one recorded before a Secret
        # it mounts existed would be rolled once when the Secret appeared.
        rolls.start()
        await in_parallel(
            deployments,
            lambda i: stage.kube.create(
                DEPLOYMENTS,
                deployment(i, [f"{PREFIX}-{i * share + n}-tls" for n in range(share)]),
            ),
        )
        await until(lambda: len(rolls.recorded) >= deployments, 600, "every Deployment recorded")
        patches_before = operator_counter(stage.operator, "mtls_operator_workload_rolls_total")
        requested = renewal_request(datetime.datetime.now(datetime.UTC))
        asked = {"metadata": {"annotations": {RENEW_REQUESTED_ANNOTATION: requested}}}
        started = time.monotonic()
        await in_parallel(
            count,
            lambda i: stage.kube.merge_patch(certificates_path(NAMESPACE, f"{PREFIX}-{i}"), asked),
        )
        await ready.wait_until(
            lambda: sum(r >= 2 for r in ready.revisions.values()) >= count, timeout=1800
        )
        renewed = time.monotonic() - started
        await until(
            lambda: (
                len(rolls.rolled) >= deployments
                and time.monotonic() - rolls.moments()[-1] > QUIET_SECONDS
            ),
            1800,
            "every Deployment rolled, and no roll since",
        )
        patches = (
            operator_counter(stage.operator, "mtls_operator_workload_rolls_total") - patches_before
        )
        events = await roll_events(stage.kube)
        storm = Storm(count, deployments, started, renewed, patches, events)
        report(figures, rolls, storm)
        figures.note_memory("operator RSS after the storm", stage.operator.memory_kib())
    finally:
        await rolls.stop()
        await ready.stop()
        await stage.close()


async def roll_events(kube: Kube) -> int:
    """Writes of the rolls' Events: each Event's creation and each count added to it."""
    items, _ = await kube.list(f"/api/v1/namespaces/{NAMESPACE}/events")
    reasons = {ROLLED_FOR_CERTIFICATE, ROLLED_A_WORKLOAD}
    return sum(int(item.get("count") or 1) for item in items if item.get("reason") in reasons)


def busiest(moments: list[float]) -> int:
    """The most rolls in any WINDOW_SECONDS."""
    most, start = 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] > WINDOW_SECONDS:
            start += 1
        most = max(most, end - start + 1)
    return most


@dataclass(frozen=True)
class Storm:
    count: int  # certificates renewed
    deployments: int
    started: float  # when the renewals were asked for (monotonic)
    renewed: float  # seconds until all were renewed
    patches: float  # the operator's patches of Deployments
    events: int  # writes of the rolls' Events


def report(figures: Figures, rolls: Rolls, storm: Storm) -> None:
    count, deployments, started = storm.count, storm.deployments, storm.started
    patches, events = storm.patches, storm.events
    per_deployment = [len(rolls.rolled.get(f"app-{i}", [])) for i in range(deployments)]
    more = sum(n > 1 for n in per_deployment)
    figures.note(
        f"rolls per Deployment, {count} certificates renewed under {deployments}",
        f"{statistics.mean(per_deployment):.2f}",
        f"min {min(per_deployment)}, max {max(per_deployment)}; {more} rolled more than once; "
        f"target 1 (the renewals of one Deployment's certificates are one change); all "
        f"{count} renewed in {storm.renewed:.0f} s",
        statistics.mean(per_deployment),
        "rolls",
    )
    moments = rolls.moments()
    rate, burst = OperatorConfig.workload_roll_rate, OperatorConfig.workload_roll_burst
    allowed = burst + rate * WINDOW_SECONDS
    most = busiest(moments)
    figures.note(
        f"busiest rolls over {WINDOW_SECONDS} s",
        f"{most}",
        f"the last roll {moments[-1] - started:.0f} s after the renewals were asked for; "
        f"target at most {allowed:.0f}, what --workload-roll-rate {rate:g} with a burst of "
        f"{burst} allows",
        most,
        "rolls",
    )
    writes = patches + events
    figures.note(
        "the operator's writes for the rolls, per renewal",
        f"{writes / count:.2f}",
        f"{patches:.0f} patches of Deployments and {events} Event writes for {count} renewals",
        writes / count,
        "writes",
    )
