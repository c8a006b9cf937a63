"""Scenario `scale`: bursts that bring the operator to 10,000 and then
50,000 ECDSA certificates. For each burst it measures the time until all
are Ready and the rate against the bare client at the same count (the
mean of a bare burst just before and one just after, so that the machine's
drift between minutes cancels out), and the operator's RSS. At the
largest size it measures the operator's CPU when idle (nothing is polled,
so it should be near zero), and a restart: the time until idle, the
certificates re-issued and the writes made (both should be zero)."""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.bare import BareWrites, observed_baseline
from bench.figures import Figures, mib, rss_target
from bench.metrics import api_writes, operator_counter, ready_gauges
from bench.ready_watch import ReadyWatch
from bench.stage import Stage
from bench.usage import cpu_seconds

NAMESPACE = "scale"
# Idle: every certificate looked at, and under this much of a core for a second.
IDLE_CORE_FRACTION = 0.05
# The bare client's bursts at each size: one before the operator's, one after.
BARE_RUNS = ("before", "after")


def bare_namespace(size: int, when: str) -> str:
    return f"{NAMESPACE}-baseline-{size}-{when}"


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
    baselines = [bare_namespace(size, when) for size in sizes for when in BARE_RUNS]
    stage = Stage("scale", [NAMESPACE, *baselines], ["--namespace", NAMESPACE])
    watch = ReadyWatch(stage.kube, NAMESPACE)
    try:
        await asyncio.sleep(2)  # discovery of the new kind
        stage.operator.start()
        copied = await BareWrites.copied(stage.kube, NAMESPACE)
        watch.start()
        total = 1  # the certificate whose bodies the bare client copies
        for size in sizes:
            burst = size - total

            async def bare(when: str, size: int = size, burst: int = burst) -> float:
                namespace = bare_namespace(size, when)
                return await observed_baseline(stage.kube, namespace, burst, "b", writes=copied)

            before = await bare("before")
            started = time.monotonic()
            await stage.create(NAMESPACE, burst, f"s{size}")
            total = size
            seconds = await watch.wait(total, timeout=3600) - started
            await asyncio.sleep(5)
            memory = stage.operator.memory_kib()
            after = await bare("after")
            rate, bare_rate = burst / seconds, (before + after) / 2
            figures.note(
                f"burst of {burst} to {size} certificates: all Ready",
                f"{seconds:.1f} s",
                f"{rate:.0f}/s = {rate / bare_rate:.0%} of the bare client's {bare_rate:.0f}/s "
                f"at the same count ({before:.0f}/s before, {after:.0f}/s after)",
                rate / bare_rate,
                "fraction of bare",
            )
            figures.note_memory(f"operator RSS at {size} certificates", memory, rss_target(size))
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
