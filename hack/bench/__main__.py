"""`make bench`: speed, write count and memory of the operator, on a fresh
local control plane (operator, API server and etcd on this machine).

Prints one table of figures a scenario and writes it to
.bench/<scenario>.json. Nothing here asserts: the figures are compared
with the targets in the product specification by whoever reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from bench import default, pods, policy, revocations, rolls, rotation, scale, storm
from bench.doc_tables import publish
from bench.figures import Figures
from bench.results import report

# Each scenario, alone with `make bench SCENARIO=name`; `all` runs them in turn.
SCENARIOS: dict[str, Callable[[argparse.Namespace, Figures], Coroutine[Any, Any, None]]] = {
    "default": default.run,
    "scale": scale.run,
    "storm": storm.run,
    "rotation": rotation.run,
    "pods": pods.run,
    "policy": policy.run,
    "rolls": rolls.run,
    "revocations": revocations.run,
}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scenario", choices=[*SCENARIOS, "all"], default="default", help="what to measure"
    )
    parser.add_argument("--count", type=int, default=1000, help="certificates applied together")
    parser.add_argument(
        "--scale",
        type=int,
        default=10000,
        help="total certificates for the memory and restart figures",
    )
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--unrelated", type=int, default=2000, help="unrelated Secrets to create")
    parser.add_argument(
        "--pod-requests", type=int, default=1000, help="PodCertificateRequests posted together"
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="copy each scenario's figures to docs/bench/ and render the docs' tables from them",
    )
    scale.add_arguments(parser)
    storm.add_arguments(parser)
    rotation.add_arguments(parser)
    policy.add_arguments(parser)
    rolls.add_arguments(parser)
    revocations.add_arguments(parser)
    return parser


def main() -> int:
    args = arguments().parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    for name in names:
        started = time.monotonic()
        figures = Figures()
        asyncio.run(SCENARIOS[name](args, figures))
        report(name, figures, time.monotonic() - started)
        if args.publish:
            publish(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
