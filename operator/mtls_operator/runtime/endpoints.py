"""The HTTP endpoints for Prometheus and the kubelet: /metrics, /healthz
(restart me: a part has died) and /readyz (I cannot work until someone acts,
or I am still loading; a standby replica is ready); and each CA's CRL for
relying parties (`runtime.crl_endpoint`)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mtls_operator.runtime.crl_endpoint import Read, add_crl_routes
from mtls_operator.runtime.metrics import Metrics


async def start_endpoints(
    port: int,
    metrics: Metrics,
    healthy: Callable[[], bool],
    problems: Callable[[], list[str]],
    crls: Read | None = None,
) -> web.AppRunner:
    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def health_handler(_: web.Request) -> web.Response:
        if healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="a watch, the scheduler or a worker has stopped\n")

    async def ready_handler(_: web.Request) -> web.Response:
        found = problems()
        if not found:
            return web.Response(text="ok\n")
        return web.Response(status=503, text="".join(f"{line}\n" for line in found))

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", health_handler)
    app.router.add_get("/readyz", ready_handler)
    if crls is not None:
        add_crl_routes(app, crls)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=port).start()  # noqa: S104 - scraped from the pod network
    return runner
