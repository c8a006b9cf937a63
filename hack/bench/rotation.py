"""Scenario `rotation`: a CA that signs 10,000 certificates is rotated with
`mtls-operator ca rotate`, in its three steps. It reports the time of each
step. Throughout, a sampler reads leaf Secrets and counts every moment at
which a leaf's tls.crt does not verify against its own ca.crt; the target
is none."""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import random
import subprocess
import sys
import time
from pathlib import Path

from mtls_operator.api.paths import secrets_path
from mtls_operator.api.secret_data import decode_data
from mtls_operator.pki import chain_problem, load_certificates

from bench.background import Background
from bench.figures import Figures
from bench.paths import WORK
from bench.ready_watch import ReadyWatch
from bench.stage import Stage

NAMESPACE = "rotation"
CA_SECRET = "rotation-ca"
COMMAND = str(Path(sys.executable).parent / "mtls-operator")
SAMPLE_SIZE = 20
STEPS = (
    "step 1, the new root trusted by every leaf",
    "step 2, every leaf re-issued by the new CA",
    "step 3, the old root dropped from every leaf",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rotation-count", type=int, default=10000, help="rotation: certificates the CA signs"
    )


def init_ca(directory: Path, common_name: str) -> tuple[bytes, bytes]:
    subprocess.run(
        [COMMAND, "ca", "init", "--out", str(directory), "--common-name", common_name, "--force"],
        check=True,
        capture_output=True,
    )
    return (directory / "ca-crt.pem").read_bytes(), (directory / "ca-key.pem").read_bytes()


class Sampler(Background):
    """Reads SAMPLE_SIZE random leaf Secrets at a time, over and over."""

    def __init__(self, stage: Stage, names: list[str]) -> None:
        super().__init__()
        self.stage, self.names = stage, names
        self.samples, self.broken = 0, list[str]()

    async def _run(self) -> None:
        while True:
            for name in random.sample(self.names, min(SAMPLE_SIZE, len(self.names))):
                secret = await self.stage.kube.get(secrets_path(NAMESPACE, f"{name}-tls"))
                data = decode_data((secret or {}).get("data"))
                chain = load_certificates(data["tls.crt"])
                anchors = load_certificates(data["ca.crt"])
                now = datetime.datetime.now(datetime.UTC)
                self.samples += 1
                if (problem := chain_problem(chain, anchors, now)) is not None:
                    self.broken.append(f"{name}: {problem}")
            await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, figures: Figures) -> None:
    count = args.rotation_count
    flags = ["--namespace", NAMESPACE, "--reissue-rate", str(args.reissue_rate)]
    stage = Stage("rotation", [NAMESPACE], flags)
    watch = ReadyWatch(stage.kube, NAMESPACE)
    old, old_key = init_ca(WORK / "rotation-old-ca", "Rotation CA")
    init_ca(WORK / "rotation-new-ca", "Rotation CA 2")
    names = [f"r-{i}" for i in range(count)]
    sampler = Sampler(stage, names)
    try:
        await asyncio.sleep(2)  # discovery of the new kind
        data = {"tls.crt": old, "tls.key": old_key, "ca.crt": old}
        await stage.kube.create(
            secrets_path(NAMESPACE),
            {
                "metadata": {"name": CA_SECRET},
                "type": "kubernetes.io/tls",
                "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
            },
        )
        stage.operator.start()
        watch.start()
        await stage.create(NAMESPACE, count, "r", caSecretName=CA_SECRET)
        await watch.wait(count, timeout=3600)
        sampler.start()
        steps = await rotate(stage, args)
        await sampler.stop()
        for step, seconds in steps:
            figures.note(f"CA rotation at {count}: {step}", f"{seconds:.1f} s", "", seconds, "s")
        figures.note(
            "leaf Secrets sampled during the rotation that did not verify against their ca.crt",
            f"{len(sampler.broken)}",
            f"of {sampler.samples} samples; target 0"
            + (f"; first: {sampler.broken[0]}" if sampler.broken else ""),
            len(sampler.broken),
            "samples",
        )
        figures.note_memory("operator RSS after the rotation", stage.operator.memory_kib())
    finally:
        await sampler.stop()
        await watch.stop()
        await stage.close()


async def rotate(stage: Stage, args: argparse.Namespace) -> list[tuple[str, float]]:
    """`ca rotate`, timing each step from the line it prints when done."""
    process = await asyncio.create_subprocess_exec(
        COMMAND,
        "ca",
        "rotate",
        CA_SECRET,
        "-n",
        NAMESPACE,
        "--new-ca-dir",
        str(WORK / "rotation-new-ca"),
        "--settle",
        "0s",
        "--timeout",
        "60m",
        "--kubeconfig",
        str(stage.cluster.kubeconfig),
        stdout=asyncio.subprocess.PIPE,
    )
    if process.stdout is None:
        raise RuntimeError("ca rotate has no output to read")
    # Each step's line comes once it is written; the next one once every
    # leaf is where that step put it: the time between them is the step's.
    moments = []
    async for raw in process.stdout:
        line = raw.decode().strip()
        if line.startswith("step ") or line.endswith("trusts only, the new CA"):
            moments.append(time.monotonic())
    if await process.wait() != 0 or len(moments) != len(STEPS) + 1:
        raise RuntimeError("ca rotate failed; see its output above")
    return [
        (step, later - earlier)
        for step, earlier, later in zip(STEPS, moments[:-1], moments[1:], strict=True)
    ]
