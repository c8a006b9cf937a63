"""Scenario `policy`: the cost of the identity policy. It times a burst of
1,000 certificates before and after 1,000 MtlsPolicy objects exist; the
target is at most 10 % slower. Then it changes one policy and counts, per
namespace, the certificates the operator looked at again; only those of
the namespace the policy selects should be counted."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from mtls_operator.api.resources import policies_path

from bench.figures import Figures
from bench.metrics import operator_counter
from bench.parallel import in_parallel
from bench.ready_watch import ReadyWatch
from bench.stage import Stage

BURST_NAMESPACES = ("policy-before", "policy-after")
TEAMS = 10
PER_TEAM = 100
POLICIES_PATH = policies_path()
RECONCILIATIONS = "mtls_operator_certificate_reconciliations_total"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policies", type=int, default=1000, help="policy: MtlsPolicy objects")


def policy(name: str, team: str, names: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsPolicy",
        "metadata": {"name": name},
        "spec": {
            "namespaceSelector": {"matchLabels": {"bench.mtls.dev/team": team}},
            "allow": {"dnsNames": names},
        },
    }


async def run(args: argparse.Namespace, figures: Figures) -> None:
    teams = [f"team-{i}" for i in range(TEAMS)]
    namespaces = [*BURST_NAMESPACES, *teams]
    flags = [arg for namespace in namespaces for arg in ("--namespace", namespace)]
    stage = Stage("policy", namespaces, flags)
    for team in teams:
        stage.kubectl("label", "namespace", team, f"bench.mtls.dev/team={team}")
    watches = {namespace: ReadyWatch(stage.kube, namespace) for namespace in namespaces}
    try:
        await asyncio.sleep(2)  # discovery of the new kind
        stage.operator.start()
        for watch in watches.values():
            watch.start()
        before = await burst(stage, watches[BURST_NAMESPACES[0]], args.count)
        await in_parallel(
            args.policies,
            lambda i: stage.kube.create(
                POLICIES_PATH, policy(f"p-{i}", f"nobody-{i}", [f"*.p{i}.example"])
            ),
        )
        await asyncio.sleep(5)  # the operator has read them
        after = await burst(stage, watches[BURST_NAMESPACES[1]], args.count)
        figures.note(
            f"burst of {args.count} with {args.policies} MtlsPolicies",
            f"{after:.1f} s",
            f"{after / before - 1:+.0%} against {before:.1f} s without them; target at most +10 %",
            after / before - 1,
            "fraction slower",
        )
        await re_evaluation(stage, watches, teams, figures)
    finally:
        for watch in watches.values():
            await watch.stop()
        await stage.close()


async def burst(stage: Stage, watch: ReadyWatch, count: int) -> float:
    started = time.monotonic()
    await stage.create(watch.namespace, count, "b")
    return await watch.wait(count, timeout=1800) - started


async def re_evaluation(
    stage: Stage, watches: dict[str, ReadyWatch], teams: list[str], figures: Figures
) -> None:
    for team in teams:
        await stage.create(team, PER_TEAM, "t")
    for team in teams:
        await watches[team].wait(PER_TEAM)
    await stage.kube.create(POLICIES_PATH, policy("team-0", teams[0], ["*.team0.example"]))
    await asyncio.sleep(5)
    counted = {team: _reconciliations(stage, team) for team in teams}
    await stage.kube.merge_patch(
        policies_path("team-0"),
        {"spec": {"allow": {"dnsNames": ["*.team0.example", "*.more.example"]}}},
    )
    await asyncio.sleep(5)
    again = {team: _reconciliations(stage, team) - counted[team] for team in teams}
    others = sum(n for team, n in again.items() if team != teams[0])
    figures.note(
        "certificates looked at again after one policy changed",
        f"{again[teams[0]]:.0f} + {others:.0f}",
        f"in the namespace it selects ({PER_TEAM} there) + in the {TEAMS - 1} others; "
        "target: only the first",
        others,
        "certificates outside",
    )


def _reconciliations(stage: Stage, namespace: str) -> float:
    return operator_counter(stage.operator, RECONCILIATIONS, namespace=namespace)
