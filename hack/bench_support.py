"""What every scenario of `make bench` is built from: a fresh control plane
with the CRDs, the operator as a process, bursts of creates, a watch that
notes when each certificate is Ready, the API server's own write counter
and the operator's metrics, memory and CPU."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from mtls_operator.api.resources import certificates_path
from mtls_operator.api.status import ready_condition
from mtls_operator.runtime.kube import Kube
from mtls_operator.runtime.login import default_login

from localcluster import Kubectl, LocalCluster, control_plane_bin_dir
from operator_process import OperatorProcess

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
OPERATOR_NAMESPACE = "mtls-operator"
CLUSTER_CA = f"{OPERATOR_NAMESPACE}/mtls-operator-ca"
CONCURRENCY = 32
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")
T = TypeVar("T")

# Memory targets of the operator, by number of certificates.
RSS_TARGETS_MIB = {1000: 150, 10000: 250, 50000: 600}


def rss_target(size: int) -> str:
    """The remark naming the memory target at `size` certificates, if any."""
    target = RSS_TARGETS_MIB.get(size)
    return f"; target at most {target} MiB" if target else ""


@dataclass(frozen=True)
class Figure:
    """One row of the table: `value` as printed, `number` in `unit` for the JSON."""

    name: str
    value: str
    remark: str
    number: float | None = None
    unit: str = ""


@dataclass
class Figures:
    rows: list[Figure] = field(default_factory=list)

    def note(
        self, name: str, value: str, remark: str, number: float | None = None, unit: str = ""
    ) -> None:
        self.rows.append(Figure(name, value, remark, number, unit))


def certificate(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "mtls.dev/v1alpha1",
        "kind": "MtlsCertificate",
        "metadata": {"name": name},
        "spec": {
            "secretName": f"{name}-tls",
            "usage": "server",
            "commonName": f"{name}.{namespace}.svc",
            "dnsNames": [f"{name}.{namespace}.svc.cluster.local"],
            **spec,
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


def burst_names(prefix: str, count: int) -> set[str]:
    """The names `Stage.create` and the bare client give a burst's objects."""
    return {f"{prefix}-{index}" for index in range(count)}


def in_round_order(items: Sequence[T], round_number: int) -> list[T]:
    """`items` in their order in even rounds and reversed in odd ones, so
    that no side of a comparison always runs first."""
    return list(items) if round_number % 2 == 0 else list(reversed(items))


def is_ready(status: Mapping[str, Any]) -> bool:
    condition = ready_condition(status)
    return condition is not None and condition.get("status") == "True"


class ReadyWatch:
    """Follows every MtlsCertificate of a namespace and notes when each
    first reports Ready=True, and each Ready revision it reports."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.ready_at: dict[str, float] = {}
        self.revisions: dict[str, int] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait(self, names: set[str] | int, timeout: float = 1800.0) -> float:
        return await self.wait_until(lambda: self._reached(names), timeout, names)

    async def wait_until(
        self, done: Callable[[], bool], timeout: float = 1800.0, what: object = "done"
    ) -> float:
        deadline = time.monotonic() + timeout
        while not done():
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.ready_at)} Ready, wanted {what}")
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
        status = obj.get("status") or {}
        if not is_ready(status):
            return
        if name not in self.ready_at:
            self.ready_at[name] = time.monotonic()
        self.revisions[name] = int(status.get("revision") or 0)
        self.changed.set()


def api_writes(kubectl: Kubectl, resources: frozenset[str] | None = None) -> int:
    """Write requests the API server has answered for the resources an
    issuance writes (Secrets, MtlsCertificates and their status, Events),
    from its own request counter: every client's writes count, kopf's
    bookkeeping included. Lease renewals (leader election, every 2 s) are
    per time, not per issuance, and are left out."""
    wanted = resources or frozenset({"secrets", "mtlscertificates", "events"})
    text = kubectl("get", "--raw", "/metrics", timeout=120).stdout
    total = 0
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in wanted:
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


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process, from /proc (clock ticks)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


class Stage:
    """A fresh control plane with the CRDs and namespaces, a client, and an
    operator (not started) with the given flags."""

    def __init__(self, name: str, namespaces: list[str], operator_args: list[str]) -> None:
        bin_dir = control_plane_bin_dir()
        WORK.mkdir(exist_ok=True)
        self.cluster = LocalCluster.start(WORK / f"cluster-{name}", bin_dir)
        os.environ["KUBECONFIG"] = str(self.cluster.kubeconfig)
        self.kubectl = Kubectl(
            bin_dir / "kubectl", self.cluster.kubeconfig, cache_dir=WORK / "kubectl-cache"
        )
        self.kubectl("apply", "--server-side", "-k", str(ROOT / "crds"))
        for crd in ("mtlscertificates.mtls.dev", "mtlspolicies.mtls.dev"):
            self.kubectl("wait", "--for=condition=Established", f"crd/{crd}")
        for namespace in [OPERATOR_NAMESPACE, *namespaces]:
            self.kubectl("create", "namespace", namespace)
        self.kube = Kube(default_login, max_connections=CONCURRENCY * 2)
        log = WORK / f"operator-{name}.log"
        log.unlink(missing_ok=True)
        self.operator = OperatorProcess(
            self.cluster.kubeconfig,
            log,
            ["--bootstrap-ca", "--cluster-ca-secret", CLUSTER_CA, *operator_args],
        )

    def create(self, namespace: str, count: int, prefix: str, **spec: Any) -> Awaitable[float]:
        return in_parallel(
            count,
            lambda i: self.kube.create(
                certificates_path(namespace), certificate(f"{prefix}-{i}", namespace, **spec)
            ),
        )

    async def close(self) -> None:
        self.operator.stop()
        await self.kube.close()
        self.cluster.stop()
