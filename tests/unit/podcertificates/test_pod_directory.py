"""What the pod signer knows from its watches: one small fact per pod, node
and service account, current through re-lists and deletions; a claim it
holds and that agrees is not read again, one it lacks or that disagrees is
read from the API, so that no refusal rests on a lagging watch."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from mtls_operator.podcertificates.directory import Directory
from mtls_operator.podcertificates.gather import Gatherer
from mtls_operator.policy.pod_request import Input, PodFacts
from mtls_operator.runtime.cache import Informer, SharedCache
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics
from mtls_operator.tenancy.store import IdentitySettings, Tenancy

from support.authorities import make_ca
from support.clock import NOW, FakeClock
from support.fake_api import FakeKube, RecordedWatches
from support.objects import pod_certificate_request

POD_PATH = "/api/v1/namespaces/shop/pods/app"
NODE_PATH = "/api/v1/nodes/node-1"
ACCOUNT_PATH = "/api/v1/namespaces/shop/serviceaccounts/payments"


def pod(name: str, uid: str, node: str = "node-1", account: str = "payments") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": name, "uid": uid},
        "spec": {"nodeName": node, "serviceAccountName": account, "containers": []},
    }


def named(name: str, uid: str, namespace: str | None = None) -> dict[str, Any]:
    metadata = {"name": name, "uid": uid, **({"namespace": namespace} if namespace else {})}
    return {"kind": "PartialObjectMetadata", "metadata": metadata}


def new_directory(namespaces: tuple[str, ...] = (), names: list[str] | None = None) -> Directory:
    """A directory of a cache whose watches are only named (in `names`)."""
    cache = SharedCache(FakeKube(), RecordedWatches(names))
    directory = Directory(cache, namespaces)
    cache.start()
    return directory


def pods_of(directory: Directory) -> Informer[PodFacts]:
    informer = directory.pods.of("shop")
    assert informer is not None
    return informer


def accounts_of(directory: Directory) -> Informer[str]:
    informer = directory.service_accounts.of("shop")
    assert informer is not None
    return informer


def test_a_relist_keeps_what_it_lists_and_drops_the_rest() -> None:
    pods = pods_of(new_directory())
    pods.begin_relist()
    pods.add_page([pod("app", "uid-1"), pod("old", "uid-2")])
    pods.end_relist("")
    pods.begin_relist()
    pods.add_page([pod("app", "uid-1")])
    pods.add_page([pod("new", "uid-3", account="")])
    pods.end_relist("")
    assert dict(pods.items()) == {
        ("shop", "app"): PodFacts("uid-1", "node-1", "payments"),
        ("shop", "new"): PodFacts("uid-3", "node-1", "default"),
    }


def test_a_pod_is_known_with_the_annotations_its_certificate_volumes_declare() -> None:
    body = pod("app", "uid-1")
    body["spec"]["volumes"] = [
        {"name": "data", "emptyDir": {}},
        {
            "name": "identity",
            "projected": {
                "sources": [
                    {"configMap": {"name": "x"}},
                    {
                        "podCertificate": {
                            "signerName": "mtls.dev/pod-identity",
                            "keyType": "ECDSAP256",
                            "userAnnotations": {"z.io/b": "2", "mtls.dev/dns-names": "a.shop.svc"},
                        }
                    },
                    {"podCertificate": {"signerName": "example.com/other", "keyType": "ED25519"}},
                ]
            },
        },
    ]
    directory = new_directory()
    pods_of(directory).apply("ADDED", body)
    facts = directory.pods.get(("shop", "app"))
    assert facts is not None
    assert facts.certificate_volumes == (
        ("mtls.dev/pod-identity", (("mtls.dev/dns-names", "a.shop.svc"), ("z.io/b", "2"))),
        ("example.com/other", ()),
    )
    assert facts.declared_annotations("example.com/other") == [()]
    assert facts.declared_annotations("example.com/none") == []
    # The claims a request makes are what a pod is compared on.
    assert facts == PodFacts("uid-1", "node-1", "payments")


def test_events_change_and_remove_facts() -> None:
    directory = new_directory()
    directory.nodes.apply("ADDED", named("node-1", "uid-a"))
    directory.nodes.apply("MODIFIED", named("node-1", "uid-b"))
    accounts_of(directory).apply("ADDED", named("payments", "uid-sa", "shop"))
    accounts_of(directory).apply("DELETED", named("payments", "uid-sa", "shop"))
    assert directory.node_uid("node-1") == "uid-b"
    assert len(directory.service_accounts) == 0


def test_the_watches_cover_the_signers_namespaces_and_every_node() -> None:
    names: list[str] = []
    new_directory(("shop", "bank"), names)
    assert sorted(names) == [
        "nodes",
        "pods-bank",
        "pods-shop",
        "serviceaccounts-bank",
        "serviceaccounts-shop",
    ]
    names = []
    new_directory((), names)
    assert sorted(names) == [
        "nodes",
        "pods-all",
        "serviceaccounts-all",
    ]


@pytest.fixture
def kube() -> FakeKube:
    kube = FakeKube()
    kube.put(POD_PATH, pod("app", "uid-pod"))
    kube.put(NODE_PATH, named("node-1", "uid-node"))
    kube.put(ACCOUNT_PATH, named("payments", "uid-sa", "shop"))
    return kube


def gathered(kube: FakeKube, directory: Directory, **spec: str) -> Input:
    runtime = Runtime(kube, FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
    runtime.executor.shutdown()
    tenancy = Tenancy(runtime, IdentitySettings())
    tenancy.namespace_informer.replace([{"metadata": {"name": "shop"}}])  # as its watch lists it
    gatherer = Gatherer(
        kube, directory, tenancy, runtime.clock, max_duration=datetime.timedelta(hours=24)
    )
    request = pod_certificate_request(**spec)
    return asyncio.run(gatherer.gather(request, make_ca()))


def known_directory() -> Directory:
    directory = new_directory()
    pods_of(directory).apply("ADDED", pod("app", "uid-pod"))
    directory.nodes.apply("ADDED", named("node-1", "uid-node"))
    accounts_of(directory).apply("ADDED", named("payments", "uid-sa", "shop"))
    return directory


def test_claims_the_watches_agree_with_are_not_read_again(kube: FakeKube) -> None:
    given = gathered(kube, known_directory())
    assert kube.reads == []
    assert (given.pod, given.node_uid, given.service_account_uid) == (
        PodFacts("uid-pod", "node-1", "payments"),
        "uid-node",
        "uid-sa",
    )


def test_claims_the_watches_lack_are_read(kube: FakeKube) -> None:
    given = gathered(kube, new_directory())
    assert kube.reads == [POD_PATH, NODE_PATH, ACCOUNT_PATH]
    assert (given.pod, given.node_uid, given.service_account_uid) == (
        PodFacts("uid-pod", "node-1", "payments"),
        "uid-node",
        "uid-sa",
    )


def test_a_claim_that_disagrees_is_judged_on_what_the_api_says(kube: FakeKube) -> None:
    directory = known_directory()
    pods_of(directory).apply("MODIFIED", pod("app", "uid-stale"))
    given = gathered(kube, directory, podUID="uid-forged", nodeUID="uid-other")
    assert kube.reads == [POD_PATH, NODE_PATH]
    assert given.pod == PodFacts("uid-pod", "node-1", "payments")
    assert given.node_uid == "uid-node"
    kube.objects.pop(ACCOUNT_PATH)
    assert gathered(kube, new_directory()).service_account_uid is None
