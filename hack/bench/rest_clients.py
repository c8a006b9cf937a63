"""The operator's own REST client (`runtime/kube.py`) against the one the
kubernetes package ships (`kubernetes.aio`), on the work the operator does:

- a burst: 1,000 issuances' writes (create a Secret, merge-patch it, create
  an Event), 32 at a time, as the benchmark's burst does them;
- memory: listing 10,000 TLS Secrets page by page (500 a page) and keeping a
  small fact of each, as the operator's Secret watch does.

Each client runs in a fresh process, so its import and peak RSS are its own.
Prints a table, and writes its figures to .bench/clients.json (with
--publish also to docs/bench/, rendered into docs/design.md); nothing
asserts. `PYTHONPATH=hack python -m bench.rest_clients`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.figures import Figures
from bench.parallel import CONCURRENCY, in_parallel
from bench.paths import ROOT, WORK
from bench.results import write_result
from bench.usage import peak_rss_mib

NAMESPACE = "client-bench"
MEMORY_NAMESPACE = "client-bench-memory"
MERGE_PATCH = "application/merge-patch+json"
# Where the workers find this package.
HACK = str(ROOT / "hack")
# About what a managed Secret weighs: an ECDSA chain, its key and the bundle.
SECRET_DATA = {
    key: base64.b64encode(os.urandom(size)).decode()
    for key, size in (("tls.crt", 1400), ("tls.key", 240), ("ca.crt", 700))
}


def secret(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "type": "kubernetes.io/tls", "data": SECRET_DATA}


def event(name: str) -> dict[str, Any]:
    return {
        "metadata": {"generateName": f"{name}."},
        "involvedObject": {"kind": "Secret", "name": name, "namespace": NAMESPACE},
        "reason": "Issued",
        "message": "client benchmark",
        "type": "Normal",
    }


async def project_client(task: str, count: int, prefix: str) -> dict[str, float]:
    from mtls_operator.api.paths import events_path, secrets_path  # noqa: PLC0415
    from mtls_operator.runtime.kube import Kube  # noqa: PLC0415
    from mtls_operator.runtime.login import default_login  # noqa: PLC0415

    kube = Kube(default_login, max_connections=CONCURRENCY * 2)
    try:
        if task == "burst":

            async def issue(index: int) -> None:
                name = f"{prefix}-{index}"
                await kube.create(secrets_path(NAMESPACE), secret(name))
                await kube.merge_patch(
                    secrets_path(NAMESPACE, name), {"metadata": {"annotations": {"a": "b"}}}
                )
                await kube.create(events_path(NAMESPACE), event(name))

            seconds = await in_parallel(count, issue)
            return {"writes_per_second": 3 * count / seconds}
        before = peak_rss_mib()
        facts = {}
        pages = kube.list_pages(secrets_path(MEMORY_NAMESPACE))
        async for page in pages:
            for item in page:
                facts[item["metadata"]["name"]] = item["metadata"]["resourceVersion"]
        return {"items": len(facts), "peak_rss_mib": peak_rss_mib(), "import_rss_mib": before}
    finally:
        await kube.close()


async def library_client(task: str, count: int, prefix: str) -> dict[str, float]:
    from kubernetes.aio import client, config  # noqa: PLC0415

    await config.load_kube_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = CONCURRENCY * 2
    async with client.ApiClient(configuration) as api:
        # Any: the bodies are passed as dicts, as users of the library write them.
        v1: Any = client.CoreV1Api(api)
        if task == "burst":

            async def issue(index: int) -> None:
                name = f"{prefix}-{index}"
                await v1.create_namespaced_secret(NAMESPACE, secret(name))
                await v1.patch_namespaced_secret(
                    name,
                    NAMESPACE,
                    {"metadata": {"annotations": {"a": "b"}}},
                    _content_type=MERGE_PATCH,
                )
                await v1.create_namespaced_event(NAMESPACE, event(name))

            seconds = await in_parallel(count, issue)
            return {"writes_per_second": 3 * count / seconds}
        before = peak_rss_mib()
        facts = {}
        token = None
        while True:
            page = await v1.list_namespaced_secret(MEMORY_NAMESPACE, limit=500, _continue=token)
            for item in page.items:
                facts[item.metadata.name] = item.metadata.resource_version
            token = page.metadata.var_continue
            if not token:
                break
        return {"items": len(facts), "peak_rss_mib": peak_rss_mib(), "import_rss_mib": before}


CLIENTS = {"project": project_client, "kubernetes.aio": library_client}


def worker(args: argparse.Namespace) -> int:
    result = asyncio.run(CLIENTS[args.worker](args.task, args.count, args.prefix))
    print(json.dumps(result))
    return 0


def measure(client_name: str, task: str, count: int, prefix: str) -> dict[str, float]:
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            __spec__.name,
            "--worker",
            client_name,
            "--task",
            task,
            "--count",
            str(count),
            "--prefix",
            prefix,
        ],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([HACK, os.environ.get("PYTHONPATH", "")])},
    )
    if output.returncode != 0:
        raise SystemExit(f"{client_name} {task} failed:\n{output.stderr[-3000:]}")
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rest_clients", description=__doc__)
    parser.add_argument("--worker", choices=sorted(CLIENTS))
    parser.add_argument("--task", choices=["burst", "memory"], default="burst")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--secrets", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prefix", default="s")
    parser.add_argument(
        "--publish", action="store_true", help="copy the figures to docs/bench/ and render the docs"
    )
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    # Not at the top: the workers, which share this module, import nothing
    # but their client.
    from localcluster import LocalCluster, control_plane_bin_dir  # noqa: PLC0415

    (WORK / "client").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    cluster = LocalCluster.start(WORK / "client" / "cluster", control_plane_bin_dir())
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    try:
        for namespace in (NAMESPACE, MEMORY_NAMESPACE):
            cluster.kubectl("create", "namespace", namespace)
        rows = []
        # Alternating rounds: this machine's speed drifts between minutes.
        for round_index in range(args.rounds):
            for name in CLIENTS:
                prefix = f"{name.replace('.', '-')}-{round_index}"
                rate = measure(name, "burst", args.count, prefix)["writes_per_second"]
                rows.append((name, round_index, rate))
        fill(args.secrets)
        memory = {name: measure(name, "memory", 0, "m") for name in CLIENTS}
    finally:
        cluster.stop()
    record(args, rows, memory, time.monotonic() - started)
    if args.publish:
        from bench.doc_tables import publish  # noqa: PLC0415 (as localcluster above)

        publish("clients")
    return 0


def record(
    args: argparse.Namespace,
    rows: list[tuple[str, int, float]],
    memory: dict[str, dict[str, float]],
    seconds: float,
) -> None:
    """The table on stdout, and the same figures in .bench/clients.json."""
    figures = Figures()
    print(f"\nREST clients, {args.count} issuances ({CONCURRENCY} at a time), best of rounds:")
    for name in CLIENTS:
        rates = [rate for client_name, _, rate in rows if client_name == name]
        shown = ", ".join(f"{r:.0f}" for r in rates)
        print(f"  {name:<15} {max(rates):6.0f} writes/s   (rounds: {shown})")
        figures.note(
            f"{name}: {args.count} issuances' writes (Secret create, merge patch, Event), "
            f"{CONCURRENCY} at a time",
            f"{max(rates):.0f} writes/s",
            f"rounds {shown}",
            max(rates),
            "writes/s",
        )
    print(f"\nListing {args.secrets} TLS Secrets in pages of 500, peak RSS of the process:")
    for name, measured in memory.items():
        peak, imports = measured["peak_rss_mib"], measured["import_rss_mib"]
        print(
            f"  {name:<15} {peak:6.0f} MiB "
            f"(after imports {imports:.0f} MiB; {measured['items']:.0f} listed)"
        )
        figures.note(
            f"{name}: peak RSS listing {args.secrets} TLS Secrets in pages of 500",
            f"{peak - imports:+.0f} MiB over its imports",
            f"peak {peak:.0f} MiB, {imports:.0f} MiB after imports; {measured['items']:.0f} listed",
            peak - imports,
            "MiB",
        )
    write_result("clients", figures, seconds)


def fill(count: int) -> None:
    """`count` TLS Secrets in the memory namespace, written by the project client."""

    async def create_all() -> None:
        from mtls_operator.api.paths import secrets_path  # noqa: PLC0415
        from mtls_operator.runtime.kube import Kube  # noqa: PLC0415
        from mtls_operator.runtime.login import default_login  # noqa: PLC0415

        kube = Kube(default_login, max_connections=CONCURRENCY * 2)
        try:
            await in_parallel(
                count, lambda i: kube.create(secrets_path(MEMORY_NAMESPACE), secret(f"m-{i}"))
            )
        finally:
            await kube.close()

    asyncio.run(create_all())


if __name__ == "__main__":
    sys.exit(main())
