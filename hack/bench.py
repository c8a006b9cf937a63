"""`make bench`: speed, write count and memory of the operator, on a fresh
local control plane (operator, API server and etcd on this machine).

Prints one table of figures. Nothing here asserts: the figures are compared
with the targets in the product specification by whoever reads them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import os
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mtls_operator.api.pod_certificates import pod_certificate_requests_path
from mtls_operator.api.resources import certificates_path
from mtls_operator.runtime.kube import Kube, default_login, events_path, secrets_path

from bench_pods import (
    answered,
    bare_signer,
    pcr_writes,
    pods_on_a_node,
    request_body,
    stub_requests,
)
from localcluster import Kubectl, LocalCluster, control_plane_bin_dir
from operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
NAMESPACE = "bench"
BASELINE_NAMESPACE = "bench-baseline"
PODS_BASELINE_NAMESPACE = "bench-pods-baseline"
OPERATOR_NAMESPACE = "mtls-operator"
CONCURRENCY = 32
ROUNDS = 2
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


def certificate(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "usage": "server",
            "commonName": f"{name}.{NAMESPACE}.svc",
            "dnsNames": [f"{name}.{NAMESPACE}.svc.cluster.local"],
        },
    }


async def in_parallel(count: int, job: Callable[[int], Awaitable[object]]) -> float:
    """Run job(0..count-1) with CONCURRENCY at a time; seconds taken."""
    started = time.monotonic()
    indexes = iter(range(count))

    async def lane() -> None:
        for index in indexes:
            await job(index)

    await asyncio.gather(*(lane() for _ in range(CONCURRENCY)))
    return time.monotonic() - started


class ReadyWatch:
    """Follows every MtlsCertificate of a namespace and notes when each
    first reports Ready=True."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.ready_at: dict[str, float] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self, names: set[str] | int, timeout: float = 600.0) -> float:
        deadline = time.monotonic() + timeout
        while not self._reached(names):
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                wanted = names if isinstance(names, int) else len(names)
                raise TimeoutError(f"{len(self.ready_at)} Ready, wanted {wanted}")
            try:
                await asyncio.wait_for(self.changed.wait(), timeout=remaining)
            except TimeoutError:
                continue
        return time.monotonic()

    def _reached(self, names: set[str] | int) -> bool:
        if isinstance(names, int):
            return len(self.ready_at) >= names
        return names <= self.ready_at.keys()

    async def _run(self) -> None:
        path = certificates_path(self.namespace)
        items, version = await self.kube.list(path)
        for item in items:
            self._note(item)
        while True:
            try:
                async for _, obj in self.kube.watch(path, version):
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    self._note(obj)
            except Exception:  # reconnect on any stream failure
                items, version = await self.kube.list(path)
                for item in items:
                    self._note(item)

    def _note(self, obj: dict[str, Any]) -> None:
        name = obj.get("metadata", {}).get("name")
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if (
                condition.get("type") == "Ready"
                and condition.get("status") == "True"
                and name not in self.ready_at
            ):
                self.ready_at[name] = time.monotonic()
                self.changed.set()


def api_writes(kubectl: Kubectl) -> int:
    """Write requests the API server has answered for the resources an
    issuance writes (Secrets, MtlsCertificates and their status, Events),
    from its own request counter: every client's writes count, kopf's
    bookkeeping included. Lease renewals (leader election, every 2 s) are
    per time, not per issuance, and are left out."""
    text = kubectl("get", "--raw", "/metrics", timeout=120).stdout
    total = 0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in {
            "secrets",
            "mtlscertificates",
            "events",
        }:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def operator_counter(operator: OperatorProcess, name: str, **labels: str) -> float:
    """The sum of the operator's samples of `name` with these labels."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(operator.metrics())
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def ready_gauges(operator: OperatorProcess) -> int:
    return int(operator_counter(operator, "mtls_operator_certificate_ready"))


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


async def baseline(kube: Kube, count: int, secret_data: dict[str, str], prefix: str) -> float:
    """A bare client doing the minimum for each certificate applied: create
    it, then write its Secret, its status and one Event (no crypto, no
    reading). Measured like the operator, from the first create to the last
    write, so both carry the cost of applying the objects: issuances/s."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def apply_and_issue(index: int) -> None:
        name = f"{prefix}-{index}"
        await kube.create(certificates_path(BASELINE_NAMESPACE), certificate(name))
        await kube.create(
            secrets_path(BASELINE_NAMESPACE),
            {
                "metadata": {
                    "name": f"{name}-tls",
                    "labels": {"app.kubernetes.io/managed-by": "baseline"},
                },
                "type": "kubernetes.io/tls",
                "data": secret_data,
            },
        )
        await kube.merge_patch(
            certificates_path(BASELINE_NAMESPACE, name, "status"),
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "Issued",
                            "message": "baseline",
                            "lastTransitionTime": now,
                        }
                    ]
                }
            },
        )
        await kube.create(
            events_path(BASELINE_NAMESPACE),
            {
                "metadata": {"generateName": f"{name}."},
                "involvedObject": {
                    "kind": "MtlsCertificate",
                    "name": name,
                    "namespace": BASELINE_NAMESPACE,
                },
                "reason": "Issued",
                "message": "baseline",
                "type": "Normal",
            },
        )

    seconds = await in_parallel(count, apply_and_issue)
    return count / seconds


class Bench:
    """The phases of the benchmark, each adding its figures to the table."""

    def __init__(self, args: argparse.Namespace, cluster: LocalCluster, kubectl: Kubectl) -> None:
        self.args, self.kubectl = args, kubectl
        self.figures: list[tuple[str, str, str]] = []
        self.kube = Kube(default_login, max_connections=CONCURRENCY * 2)
        self.operator = OperatorProcess(
            cluster.kubeconfig,
            WORK / "operator.log",
            [
                "--namespace",
                NAMESPACE,
                "--bootstrap-ca",
                "--cluster-ca-secret",
                f"{OPERATOR_NAMESPACE}/mtls-operator-ca",
            ],
        )
        self.watch = ReadyWatch(self.kube, NAMESPACE)
        self.bare_rate = 0.0

    def note(self, name: str, value: str, remark: str) -> None:
        self.figures.append((name, value, remark))

    def create(self, count: int, prefix: str) -> Awaitable[float]:
        return in_parallel(
            count,
            lambda i: self.kube.create(certificates_path(NAMESPACE), certificate(f"{prefix}-{i}")),
        )

    async def prepare(self) -> None:
        self.kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
        for crd in ("mtlscertificates.mtls.dev", "mtlspolicies.mtls.dev"):
            self.kubectl("wait", "--for=condition=Established", f"crd/{crd}")
        for namespace in (
            NAMESPACE,
            BASELINE_NAMESPACE,
            PODS_BASELINE_NAMESPACE,
            OPERATOR_NAMESPACE,
        ):
            self.kubectl("create", "namespace", namespace)
        await asyncio.sleep(2)  # discovery of the new kind

    async def speed(self) -> None:
        """Bare client and operator bursts, alternating, ROUNDS times each:
        this machine's speed drifts by a third between minutes, so each
        figure is the best of its runs, and every run is shown."""
        sample = {
            "tls.crt": base64.b64encode(b"x" * 1400).decode(),
            "tls.key": base64.b64encode(b"k" * 240).decode(),
            "ca.crt": base64.b64encode(b"c" * 700).decode(),
        }
        count = self.args.count
        # A warm-up first: a fresh API server is slower for its first writes.
        await baseline(self.kube, count // 5, sample, "warm")
        self.operator.start()
        idle_rss, _ = self.operator.memory_kib()
        self.note("operator RSS, idle", mib(idle_rss), "after start-up, no certificates")
        self.watch.start()
        bare_rates, times, applying = [], [], []
        writes = 0
        for round_number in range(ROUNDS):
            bare_rates.append(await baseline(self.kube, count, sample, f"base{round_number}"))
            writes_before = api_writes(self.kubectl)
            started = time.monotonic()
            applying.append(await self.create(count, f"c{round_number}"))
            times.append(await self.watch.wait(count * (round_number + 1)) - started)
            await asyncio.sleep(3)  # let trailing status and event writes land
            writes += api_writes(self.kubectl) - writes_before - count
            if round_number == 0:
                rss, peak = self.operator.memory_kib()
        self.kubectl("delete", "namespace", BASELINE_NAMESPACE, "--wait=false")
        self.bare_rate = max(bare_rates)
        best = min(times)
        runs = ", ".join(f"{r:.0f}/s" for r in bare_rates)
        self.note(
            "bare client: apply, then Secret + status + Event",
            f"{self.bare_rate:.0f}/s",
            f"runs {runs}; {count} objects, {CONCURRENCY} in flight, no crypto",
        )
        runs = ", ".join(f"{t:.1f} s" for t in times)
        self.note(
            f"{count} ECDSA certificates applied together: all Ready",
            f"{best:.1f} s",
            f"runs {runs} (applying {max(applying):.1f} s at most); target 15 s",
        )
        rate = count / best
        self.note(
            "operator: apply, then issue until Ready",
            f"{rate:.0f}/s = {rate / self.bare_rate:.0%}",
            "of the bare client's best rate; target >= 50 %",
        )
        issued = operator_counter(self.operator, "mtls_operator_issuances_total", result="success")
        self.note(
            "write requests per issuance",
            f"{writes / max(issued, 1):.2f}",
            f"{writes} writes for {issued:.0f} issuances, all clients; target <= 3",
        )
        self.note(
            f"operator RSS at {count} certificates", mib(rss), f"peak {mib(peak)}; target 150 MiB"
        )

    async def latency(self) -> None:
        latencies = []
        for index in range(self.args.latency_samples):
            name = f"lat-{index}"
            begin = time.monotonic()
            await self.kube.create(certificates_path(NAMESPACE), certificate(name))
            latencies.append((await self.watch.wait({name}) - begin) * 1000)
        latencies.sort()
        p95 = latencies[max(int(len(latencies) * 0.95) - 1, 0)]
        self.note(
            "create-to-Ready, one at a time",
            f"p50 {statistics.median(latencies):.0f} ms",
            f"p95 {p95:.0f} ms over {len(latencies)}; target p50 150 ms",
        )

    async def unrelated_secrets(self) -> None:
        before, _ = self.operator.memory_kib()
        payload = {"payload": base64.b64encode(os.urandom(3000)).decode()}
        await in_parallel(
            self.args.unrelated,
            lambda i: self.kube.create(
                secrets_path(NAMESPACE), {"metadata": {"name": f"unrelated-{i}"}, "data": payload}
            ),
        )
        await asyncio.sleep(3)
        after, _ = self.operator.memory_kib()
        self.note(
            f"RSS change from {self.args.unrelated} unrelated Secrets",
            f"{(after - before) / 1024:+.1f} MiB",
            "they are never listed or watched",
        )

    async def scale(self) -> None:
        extra = self.args.scale - len(self.watch.ready_at)
        started = time.monotonic()
        await self.create(extra, "s")
        await self.watch.wait(self.args.scale)
        self.note(
            f"scale to {self.args.scale} certificates",
            f"{time.monotonic() - started:.1f} s",
            f"{extra} more created and Ready",
        )
        await asyncio.sleep(3)
        rss, peak = self.operator.memory_kib()
        self.note(
            f"operator RSS at {self.args.scale} certificates",
            mib(rss),
            f"peak {mib(peak)}; target 300 MiB",
        )

    async def restart(self) -> None:
        self.operator.stop()
        writes_before = api_writes(self.kubectl)
        started = time.monotonic()
        self.operator.start()
        deadline = time.monotonic() + 600
        while ready_gauges(self.operator) < self.args.scale and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        resync = time.monotonic() - started
        await asyncio.sleep(3)
        reissued = operator_counter(self.operator, "mtls_operator_issuances_total")
        writes = api_writes(self.kubectl) - writes_before
        self.note(
            f"restart with {self.args.scale} valid certificates",
            f"{reissued:.0f} re-issued",
            f"all Ready again in {resync:.1f} s; {writes} write requests",
        )
        rss, peak = self.operator.memory_kib()
        self.note("operator RSS after the restart", mib(rss), f"peak {mib(peak)}; target 300 MiB")

    async def pod_certificates(self) -> None:
        """PodCertificateRequests posted together, as kubelets post them,
        against a bare client posting the same and answering each with one
        status write."""
        count = self.args.pod_requests
        stubs = stub_requests(2 * count)
        node, pods = await pods_on_a_node(self.kube, PODS_BASELINE_NAMESPACE)
        bodies = [request_body(pods[i % len(pods)], node, stubs[i]) for i in range(count)]
        bare = await bare_signer(self.kube, PODS_BASELINE_NAMESPACE, bodies, in_parallel)
        node, pods = await pods_on_a_node(self.kube, NAMESPACE)
        bodies = [request_body(pods[i % len(pods)], node, stubs[count + i]) for i in range(count)]
        writes_before = pcr_writes(self.kubectl("get", "--raw", "/metrics", timeout=120).stdout)
        started = time.monotonic()
        await in_parallel(
            count,
            lambda i: self.kube.create(pod_certificate_requests_path(NAMESPACE), bodies[i]),
        )
        seconds = await answered(self.kube, NAMESPACE, count) - started
        await asyncio.sleep(2)
        metrics = self.kubectl("get", "--raw", "/metrics", timeout=120).stdout
        writes = pcr_writes(metrics) - writes_before - count
        issued = operator_counter(
            self.operator, "mtls_operator_pod_certificate_requests_total", outcome="Issued"
        )
        rate = count / seconds
        self.note(
            f"{count} PodCertificateRequests posted together: all Issued",
            f"{seconds:.1f} s",
            f"{rate:.0f}/s = {rate / bare:.0%} of a bare client posting and answering "
            f"({bare:.0f}/s); target >= 80 %",
        )
        self.note(
            "write requests per pod certificate",
            f"{writes / max(issued, 1):.2f}",
            f"{writes} status writes for {issued:.0f} issued; target 1",
        )
        rss, peak = self.operator.memory_kib()
        self.note("operator RSS after the pod certificates", mib(rss), f"peak {mib(peak)}")

    async def close(self) -> None:
        await self.watch.stop()
        self.operator.stop()
        await self.kube.close()


async def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    bin_dir = control_plane_bin_dir()
    WORK.mkdir(exist_ok=True)
    cluster = LocalCluster.start(WORK / "cluster", bin_dir)
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    bench = Bench(
        args,
        cluster,
        Kubectl(bin_dir / "kubectl", cluster.kubeconfig, cache_dir=WORK / "kubectl-cache"),
    )
    try:
        await bench.prepare()
        await bench.speed()
        await bench.latency()
        await bench.unrelated_secrets()
        if args.pod_requests:
            await bench.pod_certificates()
        if args.scale > args.count:
            await bench.scale()
            await bench.restart()
    finally:
        await bench.close()
        cluster.stop()
    return bench.figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
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
    args = parser.parse_args()
    started = time.monotonic()
    figures = asyncio.run(run(args))
    width = max(len(name) for name, _, _ in figures)
    value_width = max(len(value) for _, value, _ in figures)
    print(
        f"\nmtls-operator benchmark ({os.cpu_count()} CPUs, "
        "operator + kube-apiserver + etcd on this machine)\n"
    )
    for name, value, note in figures:
        print(f"{name:<{width}}  {value:>{value_width}}  {note}")
    print(f"\nbenchmark took {time.monotonic() - started:.0f} s; log in {WORK / 'operator.log'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
