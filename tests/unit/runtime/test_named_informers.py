"""Informers of one object by name, opened for a use and closed with the
last: one watch however many use a name, its reflector stopped (and no
longer reported by /readyz) when the last lets go, and a fresh list when it
is asked for again. The CA store and the keystore passwords share them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mtls_operator.api.secret_data import decode_data, encode_data
from mtls_operator.authorities.store import AuthorityStore, CARef
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.cache import ADDED, DELETED, MODIFIED, Change, Use
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.kube import Object
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.runtime.named_secrets import NamedSecrets

from support.clock import NOW, FakeClock
from support.fake_api import NamedWatches
from support.loop import run, settle

NS = "a"
PATH = f"/api/v1/namespaces/{NS}/secrets"
CA_PATH = f"{PATH}/ca"

Heard = list[Change[dict[str, str]]]


def values(obj: Object) -> dict[str, str]:
    return {key: value.decode() for key, value in decode_data(obj.get("data")).items()}


def secret(kube: NamedWatches, name: str, value: str) -> None:
    data = encode_data({"v": value.encode()})
    kube.put(f"{PATH}/{name}", {"metadata": {"name": name, "namespace": NS}, "data": data})


def use_ca(runtime: Runtime) -> Use[dict[str, str]]:
    return runtime.cache.named(PATH, "ca", values)


def told(changes: Heard) -> list[tuple[str, Any, Any]]:
    return [(c.type, c.old, c.new) for c in changes]


def on_runtime(
    scenario: Callable[[NamedWatches, Runtime], Awaitable[None]],
    kube: NamedWatches | None = None,
    *,
    holding: str = "ca",
) -> None:
    """`scenario` with a runtime over `kube` (by default, an API server
    holding Secret `holding`, of value 1), stopped after it."""

    async def scenario_then_stop() -> None:
        api = kube or NamedWatches()
        if kube is None:
            secret(api, holding, "1")
        runtime = Runtime(api, FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
        try:
            await scenario(api, runtime)
        finally:
            await runtime.stop()

    run(scenario_then_stop)


def test_two_users_of_a_name_share_one_watch_until_both_let_go() -> None:
    async def scenario(kube: NamedWatches, runtime: Runtime) -> None:
        first, second = use_ca(runtime), use_ca(runtime)
        assert first.informer is second.informer
        await first.synced()
        await settle()
        assert kube.open == [CA_PATH]
        assert kube.listed == ["ca"]
        assert second.get() == {"v": "1"}
        heard_first: Heard = []
        heard_second: Heard = []
        first.subscribe(heard_first.append)
        second.subscribe(heard_second.append)

        secret(kube, "ca", "2")
        await kube.delivered()
        assert told(heard_first) == told(heard_second) == [(MODIFIED, {"v": "1"}, {"v": "2"})]

        first.release()
        first.release()  # a second release of one use is nothing more
        secret(kube, "ca", "3")
        await kube.delivered()
        assert len(heard_first) == 1, "a released use hears no more"
        assert [c.type for c in heard_second] == [MODIFIED, MODIFIED]
        assert kube.open == [CA_PATH], "still used by the second"

        second.release()
        await settle()
        assert kube.open == []

    on_runtime(scenario)


def test_the_last_release_stops_the_watch_and_a_new_use_lists_afresh() -> None:
    async def scenario(kube: NamedWatches, runtime: Runtime) -> None:
        use = use_ca(runtime)
        await use.synced()
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == CA_PATH]

        use.release()
        await settle()
        assert task.cancelled()
        assert kube.open == []
        assert runtime.healthy(), "a watch stopped on purpose is no failure"

        again = use_ca(runtime)
        assert again.informer is not use.informer, "the released informer is forgotten"
        assert again.get() is None
        await again.synced()
        assert kube.listed == ["ca", "ca"]
        assert again.get() == {"v": "1"}

    on_runtime(scenario)


class Refused(NamedWatches):
    """Every list is refused, as without the RBAC to read Secrets."""

    async def list(
        self, path: str, params: Mapping[str, str] | None = None, **_: Any
    ) -> tuple[list[Object], str]:
        await super().list(path, params)
        raise ApiError(403, "Forbidden", "secrets is forbidden")


def test_readyz_forgets_a_watch_stopped_on_purpose() -> None:
    async def scenario(_: NamedWatches, runtime: Runtime) -> None:
        use = use_ca(runtime)
        while not any(line.startswith("cannot watch") for line in runtime.problems()):
            await asyncio.sleep(0)
        assert isinstance(runtime.clock, FakeClock)
        assert runtime.clock.slept, "its back-off waits on the runtime's clock"
        assert use.last_error == "403 Forbidden: secrets is forbidden"

        use.release()
        await settle()
        assert not any(line.startswith("cannot watch") for line in runtime.problems())
        assert runtime.healthy()

    on_runtime(scenario, Refused())


def test_subscribers_hear_what_changes_after_the_first_list() -> None:
    async def scenario(kube: NamedWatches, runtime: Runtime) -> None:
        use = use_ca(runtime)
        heard: Heard = []
        use.subscribe(heard.append)
        await use.synced()
        assert use.get() == {"v": "1"}
        assert heard == [], "what the first list found is read, not told"

        kube.remove(CA_PATH)
        await kube.delivered()
        assert use.get() is None
        secret(kube, "ca", "2")
        await kube.delivered()
        assert told(heard) == [(DELETED, {"v": "1"}, None), (ADDED, None, {"v": "2"})]

        late: Heard = []
        use_ca(runtime).subscribe(late.append)
        secret(kube, "ca", "3")
        await kube.delivered()
        assert told(late) == [(MODIFIED, {"v": "2"}, {"v": "3"})], "nothing replayed"

    on_runtime(scenario)


def test_the_ca_store_and_keystore_passwords_share_the_watch_of_a_name() -> None:
    async def scenario(kube: NamedWatches, runtime: Runtime) -> None:
        store = AuthorityStore(runtime.cache, runtime.clock, Metrics())
        woken: list[str] = []
        passwords = NamedSecrets[str](runtime.cache, woken.append, per_namespace=2)
        store.use(CARef(NS, "shared"), woken.append, "ca-user")
        store.use(CARef(NS, "shared"), woken.append, "another-ca-user")
        assert passwords.use((NS, "shared"), "keystore-user")
        assert await passwords.data((NS, "shared")) == {"v": b"1"}
        await settle()
        assert kube.open == [f"{PATH}/shared"]

        secret(kube, "shared", "2")
        await kube.delivered()
        assert woken == ["keystore-user"]

        passwords.release("keystore-user")
        store.release(woken.append, "ca-user")
        await settle()
        assert kube.open == [f"{PATH}/shared"], "another CA user still uses it"
        store.release(woken.append, "another-ca-user")
        await settle()
        assert kube.open == []
        await store.close()

    on_runtime(scenario, holding="shared")
