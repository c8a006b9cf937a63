"""Records that are not as the operator writes them: a malformed entry, a
hand-written key, a ConfigMap of the record's name that is someone else's,
and a write refused because the record changed; none stops the CRL."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging

import pytest

from mtls_operator.api.revocations import (
    CRL_KEY,
    entry_value,
    read_store,
    revoked_now,
    store_body,
)
from mtls_operator.pki import RevocationReason
from mtls_operator.revocations.store import ForeignStoreError, Revocations
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import Metrics
from unit.crls.test_crl_controller import RECORD, SERIAL, signer, signing

from support.authorities import make_ca
from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube
from support.loop import run

td = datetime.timedelta
CA = make_ca()


def test_an_entry_with_a_number_for_a_time_is_a_problem_not_a_crash() -> None:
    text = json.dumps({"revokedAt": 1764331200, "notAfter": "2026-12-28T12:00:00Z"})
    store = read_store({"metadata": {}, "data": {"serial-1f": text}})
    assert store.problems == ("serial-1f: revokedAt and notAfter must be RFC 3339 times",)


def test_a_refused_write_is_not_tried_again_at_once_with_the_same_stale_record() -> None:
    async def scenario() -> None:
        async with signing(CA) as s:
            await s.revoke(not_after=NOW + td(days=30))
            s.kube.writes.clear()
            await s.at_due_time()  # refused: the record changed, its event not seen yet
            for _ in range(5):  # a worker, while the watch is slow
                if not len(s.runtime.queue):
                    break
                key = await s.runtime.queue.get()
                await s.controller.reconcile(key[1])
                s.runtime.queue.done(key)
            refused = [w for w in s.kube.writes if w == ("PATCH", RECORD)]
            assert len(refused) <= 2 or SERIAL in s.crl().serial_numbers, refused

    run(scenario)


def test_an_expired_entry_under_a_hand_written_key_leaves_the_record() -> None:
    async def scenario() -> None:
        async with signing(CA) as s:
            entry = revoked_now(SERIAL, RevocationReason.UNSPECIFIED, NOW + td(days=1), NOW)
            await s.kube.merge_patch(RECORD, {"data": {"serial-4F1A09": entry_value(entry)}})
            s.watched()
            await s.work()
            assert s.crl().serial_numbers == (SERIAL,)
            for _ in range(2):
                await s.at_due_time()
                s.watched()
            assert s.crl().serial_numbers == ()
            assert list(s.kube.objects[RECORD]["data"]) == [CRL_KEY]

    run(scenario)


def test_an_unreadable_entry_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with signing(CA) as s:
            await s.kube.merge_patch(RECORD, {"data": {"serial-1f": "{}"}})
            s.watched()
            await s.work()

    with caplog.at_level(logging.INFO):
        run(scenario)
    assert "serial-1f" in caplog.text


def test_a_foreign_configmap_in_the_way_of_the_record_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with signer(CA) as s:
            s.kube.put(
                RECORD,
                {
                    "metadata": {"name": RECORD.rpartition("/")[2], "namespace": "mtls-system"},
                    "data": {},
                },
            )
            await s.work()
            assert s.due() is not None, "never looked at again"
            assert (s.signings("failure"), s.signings("success")) == (1, None)

    with caplog.at_level(logging.INFO):
        run(scenario)
    assert "mtls-operator-ca-revocations" in caplog.text


def test_one_bad_entry_does_not_stop_the_records_informer() -> None:
    async def scenario() -> None:
        kube = FakeKube()
        bad = json.dumps({"revokedAt": 1764331200, "notAfter": "2026-12-28T12:00:00Z"})
        path = "/api/v1/namespaces/mtls-system/configmaps"
        kube.put(
            f"{path}/mtls-operator-ca-revocations",
            store_body("mtls-system", "mtls-operator-ca-revocations", {"serial-1f": bad}),
        )
        runtime = Runtime(kube, FakeClock(NOW), Metrics(), workers=1, crypto_threads=1)
        revocations = Revocations(runtime.cache, kube, ("mtls-system",))
        runtime.cache.start()
        try:
            await asyncio.wait_for(revocations.synced(), 1.0)
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_revocations_asked_together_are_written_in_few_patches() -> None:
    """Every patch rewrites the whole record: a burst must not cost one each."""

    async def scenario() -> None:
        async with signing(CA) as s:
            await s.revoke(not_after=NOW + td(days=30))  # the record exists
            s.kube.writes.clear()
            entries = [
                revoked_now(serial, RevocationReason.KEY_COMPROMISE, NOW + td(days=30), NOW)
                for serial in range(0x100, 0x100 + 50)
            ]
            await asyncio.gather(*(s.revocations.record(CLUSTER_CA, e) for e in entries))
            patches = [w for w in s.kube.writes if w == ("PATCH", RECORD)]
            assert 1 <= len(patches) <= 2, patches
            held = read_store(s.kube.objects[RECORD])
            assert all(held.holds(entry.revocation.serial_number) for entry in entries)

    run(scenario)


def test_every_revocation_of_a_batch_hears_why_it_was_not_recorded() -> None:
    async def scenario() -> None:
        async with signer(CA) as s:
            s.kube.put(RECORD, {"metadata": {"name": "foreign"}, "data": {}})
            entries = [
                revoked_now(serial, RevocationReason.SUPERSEDED, NOW + td(days=30), NOW)
                for serial in (0x10, 0x11, 0x12)
            ]
            found = await asyncio.gather(
                *(s.revocations.record(CLUSTER_CA, e) for e in entries), return_exceptions=True
            )
            assert [type(error) for error in found] == [ForeignStoreError] * 3

    run(scenario)
