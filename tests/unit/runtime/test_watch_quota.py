"""A tenant chooses the names of the Secrets its certificates point at (a
CA, a keystore password), and each distinct name is one watch the operator
holds open. One namespace gets a bounded number of each; a name beyond it
is refused, and whoever was refused is told when a watch is freed."""

from __future__ import annotations

from mtls_operator.authorities.store import CA_SECRETS_PER_NAMESPACE, AuthorityStore, CARef
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.runtime.named_secrets import NamedSecrets, WatchQuota

from support.clock import NOW, FakeClock
from support.fake_api import NamedWatches, runtime_cache
from support.loop import run, settle


def test_the_quota_refuses_past_its_limit_and_wakes_who_it_refused() -> None:
    quota = WatchQuota[str](2)
    assert quota.take("a", "first")
    assert quota.take("a", "second")
    assert not quota.take("a", "third")
    assert not quota.take("a", "fourth")
    assert quota.take("b", "elsewhere"), "another namespace has a quota of its own"
    quota.forget("fourth")  # deleted while it waited
    assert quota.give_back("a") == {"third"}
    assert quota.give_back("a") == set(), "each is woken once"
    assert quota.refusal("a", "CA Secrets") == (
        "namespace a already has 2 CA Secrets in use, the most the operator watches for one "
        "namespace"
    )


def test_a_namespace_watches_a_bounded_number_of_its_own_cas() -> None:
    async def scenario() -> None:
        kube, clock = NamedWatches(), FakeClock(NOW)
        store = AuthorityStore(runtime_cache(kube, clock), clock, Metrics())
        woken: list[str] = []
        try:
            for index in range(CA_SECRETS_PER_NAMESPACE):
                assert (
                    store.use(CARef("a", f"ca-{index}"), woken.append, f"cert-{index}", tenant=True)
                    is None
                )
            # More certificates naming a CA already watched cost nothing.
            assert store.use(CARef("a", "ca-0"), woken.append, "cert-0b", tenant=True) is None
            refused = store.use(CARef("a", "ca-extra"), woken.append, "cert-extra", tenant=True)
            assert refused == (
                f"namespace a already has {CA_SECRETS_PER_NAMESPACE} CA Secrets in use, the "
                "most the operator watches for one namespace"
            )
            # Other namespaces, and the operator's own cluster CA, are not held back.
            assert store.use(CARef("b", "ca"), woken.append, "cert-b", tenant=True) is None
            assert store.use(CARef("a", "cluster-ca"), woken.append, "pods") is None
            await settle()
            assert len(kube.open) == CA_SECRETS_PER_NAMESPACE + 2
            # A certificate moving to a new CA frees the slot it held.
            assert store.use(CARef("a", "ca-moved"), woken.append, "cert-1", tenant=True) is None
            assert woken == ["cert-extra"], "told that a watch is free"
            again = store.use(CARef("a", "ca-extra"), woken.append, "cert-extra", tenant=True)
            assert again is not None
            # ...but the move took it: cert-extra waits for the next one, which a deletion frees.
            store.release(woken.append, "cert-2")
            assert woken == ["cert-extra", "cert-extra"]
            assert (
                store.use(CARef("a", "ca-extra"), woken.append, "cert-extra", tenant=True) is None
            )
            await settle()
            assert len(kube.open) == CA_SECRETS_PER_NAMESPACE + 2
        finally:
            await store.close()

    run(scenario)


def test_a_namespace_watches_a_bounded_number_of_password_secrets() -> None:
    async def scenario() -> None:
        kube = NamedWatches()
        woken: list[str] = []
        secrets = NamedSecrets[str](
            runtime_cache(kube, FakeClock(NOW)), woken.append, per_namespace=2
        )
        try:
            assert secrets.use(("a", "p1"), "cert-1")
            assert secrets.use(("a", "p2"), "cert-2")
            assert secrets.use(("a", "p2"), "cert-3")
            assert not secrets.use(("a", "p3"), "cert-4")
            assert await secrets.data(("a", "p3")) is None
            await settle()
            assert len(kube.open) == 2
            secrets.release("cert-2")
            assert woken == [], "p2 is still in use by cert-3"
            secrets.release("cert-3")
            assert woken == ["cert-4"]
            assert secrets.use(("a", "p3"), "cert-4")
            await settle()
            assert len(kube.open) == 2
        finally:
            await secrets.close()

    run(scenario)
