"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it:
one replica holds the Lease and works; the others wait and take over once it
has not been renewed for a lease duration (judged by their own clock, from
when they last saw it change, so clock skew between nodes does not matter)."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from mtls_operator.api.paths import leases_path
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.kube import Kube

logger = logging.getLogger(__name__)

_CALL_TIMEOUT = 5.0


class LostLeadership(Exception):
    """The Lease could not be renewed in time; another replica may lead now."""


def _micro_time(value: float) -> str:
    moment = datetime.datetime.fromtimestamp(value, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElection:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        clock: Clock,
    ) -> None:
        self._kube = kube
        self._collection = leases_path(namespace)
        self._path = leases_path(namespace, name)
        self._name = name
        self.identity = identity
        self._lease_duration = lease_duration
        self._renew_deadline = renew_deadline
        self._retry_period = retry_period
        self._clock = clock
        self._observed_version = ""
        self._observed_at = 0.0
        self._held_by_another = False
        self.leading = False

    async def acquire(self) -> None:
        """Return once this replica leads."""
        announced = False
        while True:
            try:
                if await self._try_acquire_or_renew():
                    break
            except ApiError as err:
                logger.warning("could not read or take the Lease %s: %s", self._name, err)
            else:
                if not announced:
                    logger.info("waiting to lead: Lease %s is held by another replica", self._name)
                    announced = True
            await self._clock.sleep(self._retry_period)
        self.leading = True
        logger.info("leading as %s (Lease %s)", self.identity, self._name)

    async def hold(self) -> None:
        """Renew the Lease until cancelled. Raise LostLeadership as soon as
        another replica holds it, or when no renewal succeeded within the
        renew deadline (shorter than the lease duration, so this replica
        stops before a standby may start)."""
        last_renewal = self._clock.monotonic()
        while True:
            await self._clock.sleep(self._retry_period)
            remaining = self._renew_deadline - (self._clock.monotonic() - last_renewal)
            try:
                renewed = await asyncio.wait_for(
                    self._try_acquire_or_renew(), timeout=max(remaining, 0.1)
                )
            except (ApiError, TimeoutError) as err:
                logger.warning("could not renew the Lease: %s", str(err) or "timed out")
                renewed = False
            if renewed:
                last_renewal = self._clock.monotonic()
            elif (
                self._held_by_another
                or self._clock.monotonic() - last_renewal >= self._renew_deadline
            ):
                self.leading = False
                raise LostLeadership(
                    f"the Lease {self._name} is held by another replica"
                    if self._held_by_another
                    else f"the Lease {self._name} was not renewed for {self._renew_deadline:.0f}s"
                )

    async def release(self) -> None:
        """Give the Lease up at once, so that a standby takes over without
        waiting for it to expire."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self._kube.get(self._path, retry=False, timeout=_CALL_TIMEOUT)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            await self._kube.replace(self._path, lease, retry=False, timeout=_CALL_TIMEOUT)
        except ApiError as err:
            logger.warning("could not release the Lease: %s", err)

    async def _try_acquire_or_renew(self) -> bool:
        now = self._clock.time()
        self._held_by_another = False
        # One attempt per call, no retries: the caller's deadline decides.
        lease = await self._kube.get(self._path, retry=False, timeout=_CALL_TIMEOUT)
        if lease is None:
            return await self._create(now)
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        version = (lease.get("metadata") or {}).get("resourceVersion", "")
        if version != self._observed_version:
            self._observed_version, self._observed_at = version, self._clock.monotonic()
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self._lease_duration)
        if (
            holder
            and holder != self.identity
            and self._clock.monotonic() < self._observed_at + duration
        ):
            self._held_by_another = True
            return False
        if holder != self.identity:
            spec["acquireTime"] = _micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=round(self._lease_duration),
            renewTime=_micro_time(now),
        )
        lease["spec"] = spec
        try:
            updated = await self._kube.replace(
                self._path, lease, retry=False, timeout=_CALL_TIMEOUT
            )
        except ApiError as err:
            if err.conflict:
                return False  # someone else wrote it first
            raise
        self._observed_version = (updated.get("metadata") or {}).get("resourceVersion", "")
        self._observed_at = self._clock.monotonic()
        return True

    async def _create(self, now: float) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._name},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": round(self._lease_duration),
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }
        try:
            await self._kube.create(self._collection, body, retry=False, timeout=_CALL_TIMEOUT)
        except ApiError as err:
            if err.conflict:
                return False
            raise
        self._observed_at = self._clock.monotonic()
        return True
