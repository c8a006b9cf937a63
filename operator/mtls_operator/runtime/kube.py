"""The one module that talks to the Kubernetes API.

A small asynchronous REST client on aiohttp (already kopf's transport) with
the few calls the operator makes. Credentials come from the in-cluster
ServiceAccount or the kubeconfig, through the kubernetes client library (so
exec plugins work), and are renewed on a 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import kopf

from mtls_operator.runtime import backoff

logger = logging.getLogger(__name__)

Login = Callable[[], Awaitable[kopf.ConnectionInfo]]
Object = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace, name)

MERGE_PATCH = "application/merge-patch+json"
_RETRIABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_WATCH_TIMEOUT_SECONDS = 290
# The API server sends every watch a bookmark about once a minute, however
# quiet the collection: a watch silent for longer has stalled (a frozen API
# server, a half-open connection) and is opened again.
WATCH_INACTIVITY_SECONDS = 70.0
_LIST_PAGE_SIZE = 500
# The longest watch event read (one JSON line). The API server stores no
# object over etcd's request limit (1.5 MiB by default) and takes no request
# body over 3 MiB; an event's JSON is larger than the stored object (base64
# data, escaping, managed fields). aiohttp's own line limit (512 KiB) is less
# than a Secret may hold: any tenant could blind a cluster-wide watch with
# one large object.
MAX_WATCH_EVENT_BYTES = 16 * 1024 * 1024
# Metadata-only reads, as client-go's metadata informers make them: the API
# server sends each object's metadata alone (a Node's status, which can be
# tens of kilobytes, never crosses the wire).
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_REQUEST_TIMEOUT = 30.0


class ApiError(Exception):
    """A refused API request, with the status and the server's reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        # Status 0: no answer from the API server (no credentials, unreachable).
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """A failed precondition (resourceVersion) or an existing name."""
        return self.status == 409


class Gone(ApiError):
    """The requested resourceVersion is too old; the caller must re-list."""


class Stalled(Exception):
    """A watch delivered nothing, not even a bookmark, for WATCH_INACTIVITY_SECONDS."""


class WatchEventTooLarge(Exception):
    """A watch event longer than MAX_WATCH_EVENT_BYTES: not an object the API
    server could have stored. The caller lists again (a list has no line)."""


class WatchLines:
    """The lines (events) of a watch stream, however it is cut into chunks;
    a line may be `limit` bytes long."""

    def __init__(self, limit: int, source: str) -> None:
        self._limit = limit
        self._source = source
        self._pending = bytearray()  # the start of a line: no newline yet

    def feed(self, chunk: bytes) -> list[bytearray]:
        """The lines that `chunk` completes, without blank ones, each copied
        once (json.loads takes a bytearray, and the whitespace around it)."""
        if b"\n" not in chunk:
            self._pending += chunk
            self._check(len(self._pending))
            return []
        data = self._pending + chunk
        lines: list[bytearray] = []
        begin, search_from = 0, len(self._pending)
        while (end := data.find(b"\n", search_from)) >= 0:
            self._check(end - begin)
            line = data[begin:end]
            if line and not line.isspace():
                lines.append(line)
            begin = search_from = end + 1
        self._pending = data[begin:]
        self._check(len(self._pending))
        return lines

    def _check(self, length: int) -> None:
        if length > self._limit:
            raise WatchEventTooLarge(
                f"a watch event of {self._source} is larger than {self._limit} bytes, "
                "more than the API server stores in one object"
            )


def object_key(body: Mapping[str, Any]) -> ObjectKey:
    metadata = body.get("metadata") or {}
    return (metadata.get("namespace", ""), metadata.get("name", ""))


class Pages:
    def __init__(
        self, kube: Kube, path: str, params: dict[str, str], *, metadata_only: bool = False
    ) -> None:
        self._kube, self._path, self._params = kube, path, params
        self._accept = _METADATA_LIST if metadata_only else None
        self.resource_version = ""

    def __aiter__(self) -> AsyncIterator[list[Object]]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[list[Object]]:
        query = {**self._params, "limit": str(_LIST_PAGE_SIZE)}
        while True:
            page = await self._kube.request("GET", self._path, params=query, accept=self._accept)
            yield page.get("items") or []
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                self.resource_version = str(metadata.get("resourceVersion", ""))
                return
            query["continue"] = token


@dataclass
class _Connection:
    server: str
    session: aiohttp.ClientSession
    watch_session: aiohttp.ClientSession
    headers: dict[str, str]

    async def close(self) -> None:
        await self.session.close()
        await self.watch_session.close()


class Kube:
    """The API client. One instance per process; safe for concurrent use."""

    def __init__(self, login: Login, *, max_connections: int = 64) -> None:
        self._login = login
        self._max_connections = max_connections
        self._connection: _Connection | None = None
        self._connecting = asyncio.Lock()

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    # --- Requests. ---

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
        accept: str | None = None,
        retry: bool = True,
        timeout: float = _REQUEST_TIMEOUT,
    ) -> Object:
        """One API call. Unless `retry` is off, connection failures, 429 and
        5xx answers are retried a few times with backoff."""
        extra = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
        # Encoded once, as bytes: aiohttp takes them as they are.
        data = None if body is None else json.dumps(body).encode()
        relogged = False
        delays = (*backoff.REQUEST, None) if retry else (None,)
        for attempt, delay in enumerate(delays):
            connection = await self._connect()
            try:
                async with connection.session.request(
                    method,
                    connection.server + path,
                    params=params,
                    data=data,
                    headers={**connection.headers, **extra},
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response:
                    if response.status == 401 and not relogged:
                        relogged = True
                        await self._reset(connection)
                        continue
                    if response.status in _RETRIABLE_STATUSES and delay is not None:
                        await asyncio.sleep(_retry_after(response, delay))
                        continue
                    payload = await response.read()
                    if response.status >= 400:
                        raise _api_error(response.status, payload)
                    return json.loads(payload) if payload else {}
            except (aiohttp.ClientConnectionError, TimeoutError) as err:
                if delay is None:
                    raise ApiError(0, "Unreachable", f"{type(err).__name__}: {err}") from err
                logger.debug(
                    "API request %s %s failed (attempt %d): %s", method, path, attempt, err
                )
                await asyncio.sleep(delay)
        raise ApiError(0, "Unreachable", f"{method} {path} kept failing")

    async def get(
        self,
        path: str,
        *,
        retry: bool = True,
        timeout: float = _REQUEST_TIMEOUT,
        cached: bool = False,
    ) -> Object | None:
        """The object, or None when it does not exist. `cached`: from the API
        server's watch cache (resourceVersion=0), which spares etcd a read
        and may lag the latest write by milliseconds, as informers do."""
        params = {"resourceVersion": "0"} if cached else None
        try:
            return await self.request("GET", path, params=params, retry=retry, timeout=timeout)
        except ApiError as err:
            if err.not_found:
                return None
            raise

    async def create(
        self, path: str, body: Object, *, retry: bool = True, timeout: float = _REQUEST_TIMEOUT
    ) -> Object:
        return await self.request("POST", path, body=body, retry=retry, timeout=timeout)

    async def replace(
        self, path: str, body: Object, *, retry: bool = True, timeout: float = _REQUEST_TIMEOUT
    ) -> Object:
        """PUT: fails with 409 when body's resourceVersion is not current."""
        return await self.request("PUT", path, body=body, retry=retry, timeout=timeout)

    async def delete(self, path: str) -> None:
        """DELETE; an object already gone is fine."""
        try:
            await self.request("DELETE", path)
        except ApiError as err:
            if not err.not_found:
                raise

    async def merge_patch(self, path: str, patch: Object) -> Object:
        return await self.request("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def list(
        self, path: str, params: Mapping[str, str] | None = None, *, metadata_only: bool = False
    ) -> tuple[list[Object], str]:
        """Every item, and the resourceVersion to watch from."""
        items: list[Object] = []
        pages = self.list_pages(path, params, metadata_only=metadata_only)
        async for page in pages:
            items.extend(page)
        return items, pages.resource_version

    def list_pages(
        self, path: str, params: Mapping[str, str] | None = None, *, metadata_only: bool = False
    ) -> Pages:
        """The items in pages, so that a large collection is never held in
        memory at once; `resource_version` is set after the last page.
        `metadata_only`: each item is its apiVersion, kind and metadata."""
        return Pages(self, path, dict(params or {}), metadata_only=metadata_only)

    async def watch(
        self,
        path: str,
        resource_version: str,
        params: Mapping[str, str] | None = None,
        *,
        metadata_only: bool = False,
    ) -> AsyncIterator[tuple[str, Object]]:
        """Events after `resource_version`, until the server ends the stream.
        Raises Gone when the version is too old to continue from.
        `metadata_only`: each object is its apiVersion, kind and metadata."""
        query = {
            **(params or {}),
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(_WATCH_TIMEOUT_SECONDS),
        }
        connection = await self._connect()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=WATCH_INACTIVITY_SECONDS)
        headers = {**connection.headers, **({"Accept": _METADATA_WATCH} if metadata_only else {})}
        async with connection.watch_session.get(
            connection.server + path, params=query, headers=headers, timeout=timeout
        ) as response:
            if response.status == 401:
                await self._reset(connection)
            if response.status >= 400:
                raise _api_error(response.status, await response.read())
            # Chunks, cut into lines here: aiohttp's readline refuses lines
            # longer than its buffer, far shorter than objects can be.
            lines = WatchLines(MAX_WATCH_EVENT_BYTES, path)
            try:
                async for chunk in response.content.iter_any():
                    for line in lines.feed(chunk):
                        event = json.loads(line)
                        kind, obj = event.get("type", ""), event.get("object") or {}
                        if kind == "ERROR":
                            raise _api_error(int(obj.get("code", 500)), json.dumps(obj).encode())
                        yield kind, obj
            except aiohttp.ServerTimeoutError as err:
                raise Stalled(path) from err

    # --- Connection. ---

    async def _connect(self) -> _Connection:
        if self._connection is not None:
            return self._connection
        async with self._connecting:
            if self._connection is None:
                info = await self._login()
                self._connection = _open(info, self._max_connections)
            return self._connection

    async def _reset(self, stale: _Connection) -> None:
        async with self._connecting:
            if self._connection is stale:
                self._connection = None
                await stale.close()


def _open(info: kopf.ConnectionInfo, max_connections: int) -> _Connection:
    headers: dict[str, str] = {"Accept": "application/json"}
    if info.token:
        headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
    elif info.username and info.password:
        headers["Authorization"] = aiohttp.BasicAuth(info.username, info.password).encode()
    context: ssl.SSLContext | bool = (
        _ssl_context(info) if info.server.startswith("https") else False
    )
    session = _session(context, max_connections, info.trust_env)
    # Watches hold a connection for minutes each: they get their own pool,
    # so that however many there are, requests always find a connection.
    watch_session = _session(context, 0, info.trust_env)
    return _Connection(info.server.rstrip("/"), session, watch_session, headers)


def _session(context: ssl.SSLContext | bool, limit: int, trust_env: bool) -> aiohttp.ClientSession:
    """A session of at most `limit` connections (0: no limit). No cookie jar,
    as in client-go: the API server sets no cookies, and a jar would be
    searched on every request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=context, limit=limit),
        trust_env=trust_env,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    if info.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif info.ca_data:
        data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
        context = ssl.create_default_context(cadata=_pem_text(data))
    else:
        context = ssl.create_default_context(
            cafile=os.fsdecode(info.ca_path) if info.ca_path else None
        )
    certificate, key = info.certificate_path, info.private_key_path
    if info.certificate_data or info.private_key_data:
        # The ssl module reads client credentials only from files: write them
        # to owner-only temporary files for the duration of the load.
        with (
            _temporary_file(info.certificate_data) as cert_file,
            _temporary_file(info.private_key_data) as key_file,
        ):
            context.load_cert_chain(cert_file or os.fsdecode(certificate or ""), key_file or None)
    elif certificate:
        context.load_cert_chain(os.fsdecode(certificate), os.fsdecode(key) if key else None)
    return context


def _pem_text(data: str) -> str:
    """kopf hands CA data either as PEM or as base64 of PEM (kubeconfig style)."""
    if "-----BEGIN" in data:
        return data
    import base64  # noqa: PLC0415 - only for this rare form

    return base64.b64decode(data).decode()


@contextlib.contextmanager
def _temporary_file(data: str | bytes | None) -> Iterator[str | None]:
    if not data:
        yield None
        return
    content = data.encode() if isinstance(data, str) else data
    descriptor, path = tempfile.mkstemp(prefix="mtls-operator-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        yield path
    finally:
        os.unlink(path)


def _retry_after(response: aiohttp.ClientResponse, default: float) -> float:
    try:
        return min(float(response.headers.get("Retry-After", default)), 10.0)
    except ValueError:
        return default


def _api_error(status: int, payload: bytes) -> ApiError:
    try:
        body = json.loads(payload)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or "Error")
    message = str(body.get("message") or payload[:200].decode(errors="replace"))
    error_type = Gone if status == 410 else ApiError
    return error_type(status, reason, message)


async def default_login() -> kopf.ConnectionInfo:
    """Credentials the way kubectl finds them: the in-cluster ServiceAccount,
    else $KUBECONFIG (read now, not at import) or ~/.kube/config, through the
    kubernetes client library so that exec plugins and auth providers work."""
    return await asyncio.to_thread(login)


# The reason of the ApiError when there is nothing to log in with.
NO_CREDENTIALS = "NoCredentials"


@dataclass(frozen=True)
class KubeconfigChoice:
    """What kubectl's --kubeconfig and --context pick; both None: the
    in-cluster ServiceAccount, else $KUBECONFIG or ~/.kube/config and its
    current context."""

    path: str | None = None
    context: str | None = None

    @property
    def explicit(self) -> bool:
        return self.path is not None or self.context is not None

    def config_file(self) -> str | None:
        return self.path or os.environ.get("KUBECONFIG") or None


def kubeconfig_login(choice: KubeconfigChoice) -> Callable[[], Awaitable[kopf.ConnectionInfo]]:
    """A login as `kubectl --kubeconfig PATH --context NAME` would make."""

    async def chosen() -> kopf.ConnectionInfo:
        return await asyncio.to_thread(login, choice)

    return chosen


def login(choice: KubeconfigChoice | None = None) -> kopf.ConnectionInfo:
    import kubernetes.client  # noqa: PLC0415 - heavy; only needed to log in
    import kubernetes.config  # noqa: PLC0415

    choice = choice or KubeconfigChoice()
    # A kubeconfig asked for by name wins over a ServiceAccount around us.
    if choice.explicit or not _load_in_cluster():
        _check_context(choice)
        try:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=choice.config_file(), context=choice.context
            )
        except (kubernetes.config.ConfigException, OSError) as err:
            raise ApiError(
                0, NO_CREDENTIALS, f"no in-cluster ServiceAccount and no usable kubeconfig: {err}"
            ) from None
    config = kubernetes.client.Configuration.get_default_copy()
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def _load_in_cluster() -> bool:
    """The ServiceAccount of the pod we run in, if we run in one."""
    import kubernetes.config  # noqa: PLC0415 - heavy; only needed to log in

    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        return False
    return True


def current_namespace(choice: KubeconfigChoice | None = None) -> str:
    """The namespace commands default to, as kubectl picks it: the
    kubeconfig context's namespace, else `default`."""
    choice = choice or KubeconfigChoice()
    _check_context(choice)
    contexts, current = _contexts(choice)
    context = contexts.get(choice.context or current or "", {})
    namespace = (context.get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def _check_context(choice: KubeconfigChoice) -> None:
    """A --context the kubeconfig lacks is named, with the ones it has."""
    if choice.context is None:
        return
    known, _ = _contexts(choice)
    if choice.context not in known:
        where = choice.config_file() or "~/.kube/config"
        listed = ", ".join(sorted(known)) or "none"
        raise ApiError(
            0,
            NO_CREDENTIALS,
            f"--context {choice.context}: no such context in {where} (it has: {listed})",
        )


def _contexts(choice: KubeconfigChoice) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The kubeconfig's contexts by name, and the name of its current one, as kubectl reads
    them: each file of a KUBECONFIG path list in turn, the first to name a context wins. A
    current context that names nothing is no error until it is used (kubectl --context
    OTHER works then), so the files are read as they are, not through the client's loader,
    which refuses them."""
    import yaml  # noqa: PLC0415 - only the CLI needs it

    listed = choice.config_file() or os.path.expanduser("~/.kube/config")
    contexts: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for path in filter(None, listed.split(os.pathsep)):
        try:
            config = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(config, dict):
            continue
        for context in config.get("contexts") or []:
            if isinstance(context, dict) and context.get("name") is not None:
                contexts.setdefault(str(context["name"]), context)
        if current is None and config.get("current-context"):
            current = str(config["current-context"])
    return contexts, current
