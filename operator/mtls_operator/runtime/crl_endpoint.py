"""Each CA's current CRL over HTTP, for relying parties that fetch it (the
CRL Distribution Point of `--crl-url`): `/crl/<namespace>/<CA Secret>.crl`
(DER, as RFC 5280 4.2.1.13 asks of an HTTP distribution point) and `.pem`.

Served by every replica, the standby too (a Service spreads requests over
them), so it reads the CA's record from the API rather than from the
leader's cache, and keeps each answer for a few seconds: a burst of
clients costs one read. Only the operator's own records are served."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web

from mtls_operator.api.revocations import read_store, store_name
from mtls_operator.api.trust_bundles import configmaps_path
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.kube import Kube

# How long an answer is kept: a new CRL reaches HTTP clients this much later.
CACHE_SECONDS = 10.0
# Answers kept at most (names in requests are the client's choice).
CACHE_ENTRIES = 256
DER_TYPE = "application/pkix-crl"
PEM_TYPE = "application/x-pem-file"

_BEGIN, _END = "-----BEGIN X509 CRL-----", "-----END X509 CRL-----"

Read = Callable[[str, str], Awaitable[str | None]]


@dataclass(frozen=True)
class _Kept:
    crl_pem: str | None
    until: float


class CRLReader:
    """The PEM CRL of the CA Secret `namespace/name`, or None when it has
    none the operator signed."""

    def __init__(self, kube: Kube, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube = kube
        self._clock = clock
        self._kept: dict[tuple[str, str], _Kept] = {}

    async def __call__(self, namespace: str, name: str) -> str | None:
        key, now = (namespace, name), self._clock()
        kept = self._kept.get(key)
        if kept is not None and now < kept.until:
            return kept.crl_pem
        body = await self._kube.get(configmaps_path(namespace, store_name(name)))
        store = read_store(body) if body is not None else None
        crl_pem = store.crl_pem if store is not None and store.managed else None
        if len(self._kept) >= CACHE_ENTRIES:
            self._kept.clear()
        self._kept[key] = _Kept(crl_pem or None, now + CACHE_SECONDS)
        return crl_pem or None


def pem_body(text: str) -> bytes | None:
    """The DER inside one PEM block (the CRL was checked when it was signed)."""
    lines = text.strip().splitlines()
    if len(lines) < 3 or not lines[0].startswith(_BEGIN) or not lines[-1].startswith(_END):
        return None
    try:
        return base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        return None


def add_crl_routes(app: web.Application, read: Read) -> None:
    async def handler(request: web.Request) -> web.Response:
        namespace, file_name = request.match_info["namespace"], request.match_info["file"]
        name, dot, extension = file_name.rpartition(".")
        if not dot or extension not in ("crl", "pem"):
            raise web.HTTPNotFound(text="ask for <CA Secret>.crl (DER) or .pem\n")
        try:
            crl_pem = await read(namespace, name)
        except ApiError as err:
            if err.status == HTTPStatus.FORBIDDEN:  # a namespace the operator may not read
                raise web.HTTPNotFound(text=f"no CRL of CA {namespace}/{name}\n") from None
            raise web.HTTPServiceUnavailable(text=f"cannot read the CRL: {err.message}\n") from None
        if crl_pem is None:
            raise web.HTTPNotFound(text=f"no CRL of CA {namespace}/{name}\n")
        if extension == "pem":
            return web.Response(body=crl_pem.encode(), content_type=PEM_TYPE)
        der = pem_body(crl_pem)
        if der is None:
            raise web.HTTPServiceUnavailable(text="the stored CRL is not PEM\n")
        return web.Response(body=der, content_type=DER_TYPE)

    app.router.add_get("/crl/{namespace}/{file}", handler)
