"""The CRL signer over an in-memory API: the cluster CA's first CRL, new
entries and expired ones, the refresh before nextUpdate, and nothing
written while the CRL is current. The records' watch delivers nothing by
itself here: each test hands the informer what the API server holds, as
the watch would, and works the queue as one worker would. Time is the
runtime's fake clock."""

from __future__ import annotations

import copy
import datetime
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cryptography import x509

from mtls_operator.api.managed_secret import MANAGED_BY_LABEL
from mtls_operator.api.revocations import (
    CRL_KEY,
    STORE_LABEL,
    entry_key,
    revoked_now,
    store_name,
)
from mtls_operator.api.trust_bundles import configmaps_path
from mtls_operator.authorities.store import CARef, CAState
from mtls_operator.crls.controller import NAME, CRLController, CRLSignerSettings
from mtls_operator.pki import CertificateAuthority, RevocationReason
from mtls_operator.pki.crl import CRLFacts, crl_facts
from mtls_operator.revocations.store import Revocations, add_revocations
from mtls_operator.runtime.core import Runtime
from mtls_operator.runtime.metrics import CRLGauges, Metrics
from mtls_operator.shared import SharedParts
from mtls_operator.tenancy.store import IdentitySettings, Tenancy

from support.authorities import make_ca
from support.clock import NOW, FakeClock
from support.fake_api import CLUSTER_CA, FakeKube, FixedCAs, delivered
from support.loop import run
from support.scrape import value

td = datetime.timedelta
CA = CLUSTER_CA
RECORD = configmaps_path(CA.namespace, store_name(CA.name))
SHOP_CA = CARef("shop", "shop-ca")
SHOP_RECORD = configmaps_path(SHOP_CA.namespace, store_name(SHOP_CA.name))
# The default settings: valid 7 days, signed again 2 days before nextUpdate,
# so an entry stays listed 5 days past its notAfter.
VALIDITY = td(days=7)
REFRESH_AT = NOW + td(days=5)  # of the CRL signed at NOW
SERIAL = 0x4F1A09


@dataclass(frozen=True)
class Signer:
    kube: FakeKube
    clock: FakeClock
    runtime: Runtime
    cas: dict[CARef, CAState]
    revocations: Revocations
    controller: CRLController

    async def work(self) -> set[CARef]:
        """Reconcile what is queued until nothing is, as one worker would;
        the CAs reconciled. (Its own writes queue a CA once more: that look
        finds the CRL current, and writes nothing.)"""
        reconciled: list[CARef] = []
        while len(self.runtime.queue):
            assert len(reconciled) < 10, f"the queue never empties: {reconciled}"
            key = await self.runtime.queue.get()
            name, ca = key
            assert name == NAME, key
            try:
                await self.controller.reconcile(ca)
            finally:
                self.runtime.queue.done(key)
            reconciled.append(ca)
        return set(reconciled)

    def watched(self, path: str = RECORD) -> None:
        """The record's watch event: what the API server holds now."""
        delivered(self.revocations.stores, copy.deepcopy(self.kube.objects[path]))

    async def revoke(
        self, not_after: datetime.datetime, serial: int = SERIAL, ca: CARef = CA
    ) -> None:
        """An entry added as `mtls-operator revoke --serial` adds it (not yet seen)."""
        entry = revoked_now(serial, RevocationReason.KEY_COMPROMISE, not_after, self.clock.now())
        await add_revocations(self.kube, ca, [entry])

    def crl(self, path: str = RECORD) -> CRLFacts:
        return crl_facts(self.kube.objects[path]["data"][CRL_KEY].encode())

    def signings(self, result: str, ca: CARef = CA) -> float | None:
        """mtls_operator_crl_signings_total of `ca` and `result`, as scraped."""
        return value(
            self.runtime.metrics.render().decode(),
            "mtls_operator_crl_signings_total",
            namespace=ca.namespace,
            secret=ca.name,
            result=result,
        )

    def due(self, ca: CARef = CA) -> datetime.datetime | None:
        at = self.runtime.lane(NAME).due_at(ca)
        return datetime.datetime.fromtimestamp(at, datetime.UTC) if at is not None else None

    async def at_due_time(self) -> None:
        """The clock at the time the lane planned, and the CA reconciled."""
        due = self.due()
        assert due is not None
        self.clock.set(due)
        await self.controller.reconcile(CA)


@asynccontextmanager
async def signer(ca: CertificateAuthority) -> AsyncIterator[Signer]:
    """The CRL signer of cluster CA `ca`, started over an empty cluster."""
    kube = FakeKube()
    clock = FakeClock(NOW)
    runtime = Runtime(kube, clock, Metrics(), workers=1, crypto_threads=1)
    cas: dict[CARef, CAState] = {CA: ca}
    revocations = Revocations(runtime.cache, runtime.kube, ())
    shared = SharedParts(runtime, FixedCAs(cas), Tenancy(runtime, IdentitySettings()), revocations)
    controller = CRLController(shared, CRLSignerSettings(CA))
    runtime.cache.start()
    try:
        await controller.start()
        yield Signer(kube, clock, runtime, cas, revocations, controller)
    finally:
        await runtime.stop()


@asynccontextmanager
async def signing(ca: CertificateAuthority) -> AsyncIterator[Signer]:
    """Started, with CRL 1 signed at NOW and nothing written since."""
    async with signer(ca) as s:
        await s.work()
        s.watched()  # the event of its own write: old news
        s.kube.writes.clear()
        yield s


def test_the_cluster_ca_gets_an_empty_record_and_crl_1_on_start(
    ecdsa_ca: CertificateAuthority,
) -> None:
    async def scenario() -> None:
        async with signer(ecdsa_ca) as s:
            assert await s.work() == {CA}
            assert s.kube.writes == [("POST", configmaps_path(CA.namespace)), ("PATCH", RECORD)]
            record = s.kube.objects[RECORD]
            assert record["metadata"]["labels"] == {
                MANAGED_BY_LABEL: "mtls-operator",
                STORE_LABEL: "true",
            }
            assert list(record["data"]) == [CRL_KEY]
            assert (s.signings("success"), s.signings("failure")) == (1, None)
            assert s.crl() == CRLFacts(
                number=1,
                this_update=NOW,
                next_update=NOW + VALIDITY,
                serial_numbers=(),
                authority_key_id=ecdsa_ca.key_identifier,
            )
            assert s.due() == REFRESH_AT
            assert s.runtime.metrics.crls[(CA.namespace, CA.name)] == CRLGauges(
                NOW.timestamp(), (NOW + VALIDITY).timestamp(), ()
            )

    run(scenario)


def test_nothing_is_written_while_the_crl_is_current(ecdsa_ca: CertificateAuthority) -> None:
    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            await s.controller.reconcile(CA)
            s.clock.set(REFRESH_AT - td(seconds=1))
            await s.controller.reconcile(CA)
            s.watched()  # a repeat of the same version tells no one
            assert await s.work() == set()
            assert s.kube.writes == []
            assert s.crl().number == 1
            assert s.due() == REFRESH_AT

    run(scenario)


def test_an_entry_added_to_the_record_is_listed_in_crl_2(ecdsa_ca: CertificateAuthority) -> None:
    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            await s.revoke(not_after=NOW + td(days=30))
            s.kube.writes.clear()
            s.watched()
            assert await s.work() == {CA}
            assert s.kube.writes == [("PATCH", RECORD)]
            crl = s.crl()
            assert (crl.number, crl.this_update, crl.serial_numbers) == (2, NOW, (SERIAL,))
            assert entry_key(SERIAL) in s.kube.objects[RECORD]["data"]
            entry = x509.load_pem_x509_crl(
                s.kube.objects[RECORD]["data"][CRL_KEY].encode()
            ).get_revoked_certificate_by_serial_number(SERIAL)
            assert entry is not None
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value
            assert reason.reason is x509.ReasonFlags.key_compromise

    run(scenario)


def test_an_expired_entry_leaves_the_crl_and_the_record_when_planned(
    ecdsa_ca: CertificateAuthority,
) -> None:
    """The entry of a certificate expiring a day from NOW stays until the
    first second 5 days (a CRL period) after that: through the refresh at
    REFRESH_AT, and no longer."""
    leaves = NOW + td(days=6, seconds=1)

    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            await s.revoke(not_after=NOW + td(days=1))
            s.watched()
            await s.work()
            assert (s.crl().number, s.crl().serial_numbers) == (2, (SERIAL,))
            assert s.due() == REFRESH_AT

            await s.at_due_time()
            s.watched()
            assert (s.crl().number, s.crl().serial_numbers) == (3, (SERIAL,))
            assert s.due() == leaves

            await s.at_due_time()
            s.watched()
            crl = s.crl()
            assert (crl.number, crl.this_update, crl.serial_numbers) == (4, leaves, ())
            assert list(s.kube.objects[RECORD]["data"]) == [CRL_KEY]
            assert s.revocations.get(CA) is not None
            assert not s.revocations.holds(CA, SERIAL)
            assert s.due() == leaves + td(days=5)

    run(scenario)


def test_a_crl_at_its_refresh_time_is_signed_again_with_the_next_number(
    ecdsa_ca: CertificateAuthority,
) -> None:
    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            await s.at_due_time()
            assert s.kube.writes == [("PATCH", RECORD)]
            assert s.crl() == CRLFacts(
                number=2,
                this_update=REFRESH_AT,
                next_update=REFRESH_AT + VALIDITY,
                serial_numbers=(),
                authority_key_id=ecdsa_ca.key_identifier,
            )
            assert s.due() == REFRESH_AT + td(days=5)

    run(scenario)


def test_a_new_entry_is_not_lost_to_a_crl_signed_without_it(
    ecdsa_ca: CertificateAuthority,
) -> None:
    """The refresh is signed from the record as last seen; the API server
    refuses it (the record changed meanwhile), and the CRL signed once the
    change is seen lists the entry."""

    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            await s.revoke(not_after=NOW + td(days=30))
            s.kube.writes.clear()
            await s.at_due_time()
            assert s.kube.writes == [("PATCH", RECORD)]
            assert s.crl().number == 1, "refused: the record was not as read"
            assert entry_key(SERIAL) in s.kube.objects[RECORD]["data"]

            s.watched()
            assert await s.work() == {CA}
            crl = s.crl()
            assert (crl.number, crl.serial_numbers) == (2, (SERIAL,))

    run(scenario)


def test_a_new_ca_key_signs_the_next_crl(ecdsa_ca: CertificateAuthority) -> None:
    rotated = make_ca(common_name="Next Root CA")

    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            s.cas[CA] = rotated
            await s.controller.reconcile(CA)
            crl = s.crl()
            assert (crl.number, crl.authority_key_id) == (2, rotated.key_identifier)

    run(scenario)


def test_an_unreadable_crl_is_replaced(ecdsa_ca: CertificateAuthority) -> None:
    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            await s.revoke(not_after=NOW + td(days=30))
            await s.kube.merge_patch(RECORD, {"data": {CRL_KEY: "edited by hand"}})
            s.watched()
            assert await s.work() == {CA}
            crl = s.crl()
            assert (crl.serial_numbers, crl.authority_key_id) == (
                (SERIAL,),
                ecdsa_ca.key_identifier,
            )

    run(scenario)


def test_a_namespace_ca_gets_a_crl_with_its_first_revocation(
    ecdsa_ca: CertificateAuthority,
) -> None:
    shop_ca = make_ca(common_name="Shop CA")

    async def scenario() -> None:
        async with signing(ecdsa_ca) as s:
            s.cas[SHOP_CA] = shop_ca
            await s.controller.reconcile(SHOP_CA)
            assert (s.kube.writes, s.due(SHOP_CA)) == ([], None), "no record: no CRL"

            await s.revoke(not_after=NOW + td(days=30), ca=SHOP_CA)
            s.kube.writes.clear()
            s.watched(SHOP_RECORD)
            assert await s.work() == {SHOP_CA}
            assert s.kube.writes == [("PATCH", SHOP_RECORD)]
            crl = s.crl(SHOP_RECORD)
            assert (crl.number, crl.serial_numbers, crl.authority_key_id) == (
                1,
                (SERIAL,),
                shop_ca.key_identifier,
            )
            assert s.crl().number == 1, "the cluster CA's CRL is its own"

    run(scenario)
