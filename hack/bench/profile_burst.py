"""Where a burst's CPU goes: the bench's bare client and operator burst on a
fresh control plane, the CPU each process spends per certificate (etcd,
kube-apiserver, kube-controller-manager, the operator and this client), and
optionally a py-spy profile of the operator during the burst.

    PYTHONPATH=hack .venv/bin/python -m bench.profile_burst --count 2000 --py-spy /path/to/py-spy

py-spy is not a dependency: install it anywhere (`pip install py-spy` in a
throwaway virtualenv) and give its path. The profile is written in py-spy's
raw format (one stack per line, then its sample count), with `--gil` so that
only the thread holding the GIL is sampled: what Python spends, not what it
waits for. The CPU figures also go to .bench/profile.json (with --publish
to docs/bench/, rendered into docs/design.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

from bench.bare import BareWrites, baseline, observed_baseline
from bench.doc_tables import publish
from bench.figures import Figures
from bench.paths import WORK
from bench.ready_watch import ReadyWatch
from bench.results import write_result
from bench.stage import Stage, burst_names
from bench.usage import cpu_seconds

NAMESPACE = "bench"
BASELINE_NAMESPACE = "bench-baseline"


def cpu_by_process(stage: Stage) -> dict[str, float]:
    used = {process.name: cpu_seconds(process.pid) for process in stage.cluster.processes}
    used["operator"] = cpu_seconds(stage.operator.pid)
    own = os.times()
    used["client"] = own.user + own.system
    return used


def note_burst(
    figures: Figures,
    who: str,
    rate: float,
    count: int,
    cpu: tuple[dict[str, float], dict[str, float]],
) -> None:
    """The burst's rate and CPU per certificate by process, printed and noted."""
    before, after = cpu
    spent = {name: (after[name] - before[name]) * 1000 / count for name in before}
    shown = "  ".join(f"{name} {ms:.1f} ms" for name, ms in spent.items())
    print(f"{who} {rate:.0f}/s; CPU per certificate: {shown}")
    total = sum(spent.values())
    figures.note(
        f"{who}, burst of {count}: CPU per certificate",
        f"{total:.1f} ms",
        f"{rate:.0f}/s; " + ", ".join(f"{name} {ms:.1f}" for name, ms in spent.items()),
        total,
        "ms",
    )


async def profile(args: argparse.Namespace, figures: Figures) -> None:
    stage = Stage("profile", [NAMESPACE, BASELINE_NAMESPACE], ["--namespace", NAMESPACE])
    watch = ReadyWatch(stage.kube, NAMESPACE)
    try:
        await baseline(stage.kube, BASELINE_NAMESPACE, 200, "warm")
        stage.operator.start()
        copied = await BareWrites.copied(stage.kube, NAMESPACE)
        watch.start()
        before = cpu_by_process(stage)
        rate = await observed_baseline(
            stage.kube, BASELINE_NAMESPACE, args.count, "base", writes=copied
        )
        note_burst(figures, "bare client", rate, args.count, (before, cpu_by_process(stage)))
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [
                    args.py_spy,
                    "record",
                    "--pid",
                    str(stage.operator.pid),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--output",
                    str(args.output),
                    "--nonblocking",
                    "--threads",
                    "--gil",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await asyncio.sleep(1.5)  # py-spy attached
        before = cpu_by_process(stage)
        started = time.monotonic()
        await stage.create(NAMESPACE, args.count, "c")
        seconds = await watch.wait(burst_names("c", args.count)) - started
        rate = args.count / seconds
        note_burst(figures, "operator", rate, args.count, (before, cpu_by_process(stage)))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait()
            print(f"profile of the operator in {args.output}")
    finally:
        await watch.stop()
        await stage.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_burst", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--count", type=int, default=2000, help="certificates in the burst")
    parser.add_argument("--py-spy", help="path of a py-spy binary: profile the operator")
    parser.add_argument("--output", type=Path, default=WORK / "profile.raw")
    parser.add_argument(
        "--publish", action="store_true", help="copy the figures to docs/bench/ and render the docs"
    )
    args = parser.parse_args()
    figures = Figures()
    started = time.monotonic()
    asyncio.run(profile(args, figures))
    write_result("profile", figures, time.monotonic() - started)
    if args.publish:
        publish("profile")


if __name__ == "__main__":
    main()
