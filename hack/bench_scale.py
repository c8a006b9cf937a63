"""Scenario `scale`: bursts that bring the operator to 10,000 and then
50,000 ECDSA certificates. For each burst it measures the time until all
are Ready and the rate against the bare client at the same count, and the
operator's RSS. At the largest size it measures the operator's CPU when
idle (nothing is polled, so it should be near zero), and a restart: the
time until idle, the certificates re-issued and the writes made (both
should be zero)."""

from __future__ import annotations

import argparse
import asyncio
import time

from bench_support import (
    Figures,
    ReadyWatch,
    Stage,
    api_writes,
    cpu_seconds,
    mib,
    observed_baseline,
    operator_counter,
    ready_gauges,
    rss_target,
)

NAMESPACE = "scale"
# Idle: every certificate looked at, and under this much of a core for a second.
IDLE_CORE_FRACTION = 0.05


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale-sizes",
        default="10000,50000",
        help="scale: the totals to reach, one burst each (comma-separated)",
    )
    parser.add_argument(
        "--idle-seconds", type=int, default=60, help="scale: how long idle CPU is measured"
    )


async def run(args: argparse.Namespace, figures: Figures) -> None:
    sizes = [int(size) for size in args.scale_sizes.split(",")]
    baselines = [f"{NAMESPACE}-baseline-{size}" for size in sizes]
    stage = Stage("scale", [NAMESPACE, *baselines], ["--namespace", NAMESPACE])
    watch = ReadyWatch(stage.kube, NAMESPACE)
    try:
        await asyncio.sleep(2)  # discovery of the new kind
        stage.operator.start()
        watch.start()
        total = 0
        for size, baseline_namespace in zip(sizes, baselines, strict=True):
            burst = size - total
            bare = await observed_baseline(stage.kube, baseline_namespace, burst, "b")
            started = time.monotonic()
            await stage.create(NAMESPACE, burst, f"s{size}")
            total = size
            seconds = await watch.wait(total, timeout=3600) - started
            rate = burst / seconds
            figures.note(
                f"burst of {burst} to {size} certificates: all Ready",
                f"{seconds:.1f} s",
                f"{rate:.0f}/s = {rate / bare:.0%} of the bare client's {bare:.0f}/s "
                "at the same count",
                rate / bare,
                "fraction of bare",
            )
            await asyncio.sleep(5)
            rss, peak = stage.operator.memory_kib()
            figures.note(
                f"operator RSS at {size} certificates",
                mib(rss),
                f"peak {mib(peak)}" + rss_target(size),
                rss / 1024,
                "MiB",
            )
        await idle_cpu(stage, figures, total, args.idle_seconds)
        await restart(stage, figures, total)
    finally:
        await watch.stop()
        await stage.close()


async def idle_cpu(stage: Stage, figures: Figures, total: int, seconds: int) -> None:
    await asyncio.sleep(10)  # the last status writes and events
    before = cpu_seconds(stage.operator.pid)
    await asyncio.sleep(seconds)
    used = cpu_seconds(stage.operator.pid) - before
    figures.note(
        f"operator CPU when idle at {total} certificates",
        f"{used / seconds:.2%} of a core",
        f"{used * 60 / seconds:.2f} CPU-seconds per minute over {seconds} s; target < 1 %",
        used / seconds,
        "cores",
    )


async def restart(stage: Stage, figures: Figures, total: int) -> None:
    operator, kubectl = stage.operator, stage.kubectl
    operator.stop()
    writes_before = api_writes(kubectl)
    started = time.monotonic()
    operator.start()
    while True:
        cpu_before = cpu_seconds(operator.pid)
        await asyncio.sleep(1)
        busy = cpu_seconds(operator.pid) - cpu_before
        if ready_gauges(operator) >= total and busy < IDLE_CORE_FRACTION:
            break
        if time.monotonic() - started > 1800:
            raise TimeoutError(f"not idle after the restart: {ready_gauges(operator)} looked at")
    idle = time.monotonic() - started
    await asyncio.sleep(3)
    reissued = operator_counter(operator, "mtls_operator_issuances_total")
    writes = api_writes(kubectl) - writes_before
    rss, peak = operator.memory_kib()
    figures.note(
        f"restart at {total} certificates: idle after",
        f"{idle:.1f} s",
        f"{reissued:.0f} re-issued, {writes} write requests; RSS {mib(rss)}, peak {mib(peak)}; "
        "target idle within 120 s, 0 and 0",
        idle,
        "s",
    )
