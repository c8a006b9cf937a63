"""Scenario `storm`: 10,000 certificates created together with the same
short duration, so that their renewals all come due within the jitter
window. It measures:
- how the renewals spread;
- the highest renewal rate over any 10 s, against --reissue-rate;
- how many were renewed after their certificate had expired (must be 0);
- how soon certificates created during the storm are Ready (a p95 under
  2 s is the target)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import time
from typing import Any

from mtls_operator.api.resources import certificates_path
from mtls_operator.api.timestamps import parse_timestamp
from mtls_operator.runtime.kube import Kube

from bench.figures import Figures, p95
from bench.ready_watch import ReadyWatch
from bench.stage import Stage, certificate

NAMESPACE = "storm"
WINDOW_SECONDS = 10
PROBE_INTERVAL_SECONDS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storm-count", type=int, default=10000, help="storm: certificates")
    parser.add_argument(
        "--storm-duration", default="15m", help="storm: their spec.duration (Go duration)"
    )
    parser.add_argument(
        "--storm-renew-before",
        default="12m",
        help="storm: their spec.renewBefore; the renewals come due within a tenth of it",
    )
    parser.add_argument(
        "--reissue-rate", type=float, default=20.0, help="storm: the operator's --reissue-rate"
    )
    parser.add_argument(
        "--storm-probes", type=int, default=60, help="storm: certificates created during it"
    )


class Renewals(ReadyWatch):
    """Also when each certificate's revision 2 was first seen, and the
    notAfter of its revision 1."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(kube, NAMESPACE)
        self.first_not_after: dict[str, datetime.datetime] = {}
        self.renewed_at: dict[str, datetime.datetime] = {}

    def _note(self, obj: dict[str, Any]) -> None:
        super()._note(obj)
        name = str(obj.get("metadata", {}).get("name"))
        status = obj.get("status") or {}
        revision = int(status.get("revision") or 0)
        not_after = parse_timestamp(status.get("notAfter"))
        if revision == 1 and not_after is not None:
            self.first_not_after.setdefault(name, not_after)
        if revision >= 2 and name not in self.renewed_at:
            self.renewed_at[name] = datetime.datetime.now(datetime.UTC)


def busiest_rate(moments: list[datetime.datetime]) -> float:
    """The most renewals in any WINDOW_SECONDS, per second."""
    times = sorted(m.timestamp() for m in moments)
    most, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] > WINDOW_SECONDS:
            start += 1
        most = max(most, end - start + 1)
    return most / WINDOW_SECONDS


async def run(args: argparse.Namespace, figures: Figures) -> None:
    count = args.storm_count
    flags = ["--namespace", NAMESPACE, "--min-duration", "1m"]
    stage = Stage("storm", [NAMESPACE], [*flags, "--reissue-rate", str(args.reissue_rate)])
    watch = ReadyWatch(stage.kube, NAMESPACE)
    renewals = Renewals(stage.kube)
    spec = {"duration": args.storm_duration, "renewBefore": args.storm_renew_before}
    try:
        await asyncio.sleep(2)  # discovery of the new kind
        stage.operator.start()
        watch.start()
        renewals.start()
        await stage.create(NAMESPACE, count, "storm", **spec)
        await watch.wait(count, timeout=3600)
        first_ready = min(watch.ready_at.values())
        latencies = await probes_during_the_storm(stage, watch, renewals, args)
        await watch.wait_until(lambda: len(renewals.renewed_at) >= count, timeout=3600)
        report(figures, renewals, latencies, args, time.monotonic() - first_ready)
        figures.note_memory("operator RSS after the storm", stage.operator.memory_kib())
    finally:
        await renewals.stop()
        await watch.stop()
        await stage.close()


async def probes_during_the_storm(
    stage: Stage, watch: ReadyWatch, renewals: Renewals, args: argparse.Namespace
) -> list[float]:
    """Certificates created one at a time while renewals are under way:
    create-to-Ready of each, in seconds."""
    while not renewals.renewed_at:
        await asyncio.sleep(0.5)
    latencies = []
    for index in range(args.storm_probes):
        name = f"probe-{index}"
        started = time.monotonic()
        await stage.kube.create(certificates_path(NAMESPACE), certificate(name, NAMESPACE))
        latencies.append(await watch.wait({name}) - started)
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)
    return latencies


def report(
    figures: Figures,
    renewals: Renewals,
    latencies: list[float],
    args: argparse.Namespace,
    seconds: float,
) -> None:
    moments = list(renewals.renewed_at.values())
    late = [
        name
        for name, renewed in renewals.renewed_at.items()
        if name in renewals.first_not_after and renewed > renewals.first_not_after[name]
    ]
    spread = (max(moments) - min(moments)).total_seconds()
    rate = busiest_rate(moments)
    figures.note(
        f"renewal storm of {len(moments)} certificates",
        f"{spread:.0f} s",
        f"from the first renewal to the last; all renewed {seconds:.0f} s after the first "
        "was Ready",
        spread,
        "s",
    )
    figures.note(
        f"busiest renewal rate over {WINDOW_SECONDS} s",
        f"{rate:.1f}/s",
        f"--reissue-rate {args.reissue_rate:g}; at or under it is the target",
        rate,
        "per s",
    )
    figures.note(
        "renewed after their certificate expired",
        f"{len(late)}",
        f"of {len(moments)}; target 0",
        len(late),
        "certificates",
    )
    slowest = p95(latencies)
    figures.note(
        "first issuance during the storm, create-to-Ready",
        f"p95 {slowest:.2f} s",
        f"p50 {statistics.median(latencies):.2f} s over {len(latencies)}; target p95 < 2 s",
        slowest,
        "s",
    )
