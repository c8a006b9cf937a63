"""The CRL signer: each CA's revocations record in, its CRL out.

One reconciliation of one CA: gather (the CA, its record, what the stored
CRL says), decide (`policy.crl.crl_due`), act (sign, and write the CRL into
the record, dropping the entries it no longer lists). The cluster CA always
has a CRL, so that servers that check one can be set up before anything is
revoked; a namespace CA gets one with its first revocation.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from mtls_operator.api.revocations import RevocationStore
from mtls_operator.authorities.store import CARef
from mtls_operator.pki import CertificateAuthority, CRLLoadError, PKIError
from mtls_operator.pki.crl import CRLFacts, crl_facts, crl_to_pem, sign_crl
from mtls_operator.policy.crl import DEFAULT_CRL, CRLInput, CRLSettings, crl_due, next_look
from mtls_operator.revocations.store import ForeignStoreError
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.errors import one_line
from mtls_operator.runtime.metrics import FAILURE, SUCCESS, CRLGauges
from mtls_operator.shared import SharedController, SharedParts

logger = logging.getLogger(__name__)

NAME = "crls"


@dataclass(frozen=True)
class CRLSignerSettings:
    cluster_ca: CARef
    crl: CRLSettings = DEFAULT_CRL


class CRLController(SharedController[CRLSignerSettings]):
    name = NAME

    def __init__(self, shared: SharedParts, settings: CRLSignerSettings) -> None:
        super().__init__(shared, settings)
        self._revocations.on_change(self._changed)

    def keys(self) -> list[CARef]:
        return sorted({self._settings.cluster_ca, *self._revocations.authorities()})

    async def start(self) -> None:
        await self._revocations.synced()
        for ca in self.keys():
            self._changed(ca)

    async def reconcile(self, key: CARef) -> None:
        try:
            await self._reconcile(key)
        except (ApiError, PKIError, ForeignStoreError) as err:
            self._lane.retry(key)
            self._runtime.metrics.observe_crl_signing(key.namespace, key.name, FAILURE)
            logger.warning("could not sign the CRL of CA %s: %s", key, one_line(err))

    async def _reconcile(self, ref: CARef) -> None:
        store = self._revocations.get(ref)
        if store is None and ref != self._settings.cluster_ca:
            self._authorities.release(self._ca_changed, ref)
            self._runtime.metrics.set_crl(ref.namespace, ref.name, None)
            self._lane.forget(ref)
            return
        ca = await self._authorities.state(ref)
        if not isinstance(ca, CertificateAuthority):
            return  # the CA's change queues it again; the CRL it has stays
        if store is None:
            await self._revocations.create(ref)
            return  # its watch event queues it again
        for problem in store.problems:
            logger.warning(
                "ConfigMap %s/%s: %s (entry ignored)", ref.namespace, store.name, problem
            )
        given = CRLInput(ca, store, _facts(store), self._runtime.clock.now(), self._settings.crl)
        trigger = crl_due(given)
        if trigger is not None:
            signed = await self._sign(store, given)
            if signed is None:
                # The record changed meanwhile: sign what it holds once its
                # watch brings it (that event queues it at once).
                self._lane.retry(ref)
                return
            self._runtime.metrics.observe_crl_signing(ref.namespace, ref.name, SUCCESS)
            logger.info("signed CRL %d of CA %s: %s", signed.number, ref, trigger.message)
            given = CRLInput(ca, store, signed, given.now, self._settings.crl)
        self._lane.succeeded(ref)
        self._report(ref, given)
        look = next_look(given)
        if look is not None:
            self._lane.schedule(ref, look.timestamp())

    async def _sign(self, store: RevocationStore, given: CRLInput) -> CRLFacts | None:
        listed = given.listed
        number = given.current.number + 1 if given.current is not None else 1
        settings = self._settings.crl
        der = await self._runtime.compute(
            lambda: sign_crl(
                given.ca,
                listed,
                number=number,
                this_update=given.now,
                next_update=given.now + settings.validity,
            ),
            quick=len(listed) < 100,
        )
        kept = {r.serial_number for r in listed}
        dropped = tuple(sorted(serial for serial in store.entries if serial not in kept))
        written = await self._revocations.write_crl(store, crl_to_pem(der).decode(), dropped)
        return crl_facts(der) if written else None

    def _report(self, ref: CARef, given: CRLInput) -> None:
        if given.current is None:
            return
        reasons = Counter(r.reason.value for r in given.listed)
        self._runtime.metrics.set_crl(
            ref.namespace,
            ref.name,
            CRLGauges(
                given.current.this_update.timestamp(),
                given.current.next_update.timestamp(),
                tuple(sorted(reasons.items())),
            ),
        )

    def _changed(self, ca: CARef) -> None:
        refusal = self._authorities.use(
            ca, self._ca_changed, ca, tenant=ca != self._settings.cluster_ca
        )
        if refusal is not None:
            logger.warning("no CRL for CA %s: %s", ca, refusal)
            return
        self._lane.add(ca)

    def _ca_changed(self, ca: CARef) -> None:
        self._lane.add(ca)


def _facts(store: RevocationStore) -> CRLFacts | None:
    if not store.crl_pem:
        return None
    try:
        return crl_facts(store.crl_pem.encode())
    except CRLLoadError:
        return None
