"""The MtlsPolicy controller: each policy's status says whether it is valid
and which namespaces it selects now. (What policies grant is judged by the
controllers that sign, through the tenancy store.)"""

from __future__ import annotations

import logging

from mtls_operator.api.mtls_policy import InvalidPolicy, PolicySpec
from mtls_operator.api.resources import policies_path
from mtls_operator.api.status import policy_status, same_status
from mtls_operator.runtime import backoff
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.core import Runtime
from mtls_operator.tenancy.store import Tenancy

logger = logging.getLogger(__name__)

NAME = "mtlspolicies"


def policy_status_path(name: str) -> str:
    return policies_path(name, "status")


class PolicyController:
    name = NAME

    def __init__(self, runtime: Runtime, tenancy: Tenancy) -> None:
        self._runtime = runtime
        self._tenancy = tenancy
        self._lane = runtime.lane(NAME)
        tenancy.on_policy_change(self._lane.add)

    async def start(self) -> None:
        """Every policy's status is checked once after a start."""
        for name in self._tenancy.policy_names():
            self._lane.add(name)

    async def reconcile(self, name: str) -> None:
        record = self._tenancy.policy(name)
        if record is None:
            return
        error = str(record.parsed) if isinstance(record.parsed, InvalidPolicy) else None
        status = policy_status(
            record.status,
            generation=record.generation,
            error=error,
            selected=self._tenancy.selected_namespaces(name),
            now=self._runtime.clock.now(),
            ignored=record.parsed.ignored if isinstance(record.parsed, PolicySpec) else (),
        )
        if same_status(record.status, status):
            return
        try:
            written = await self._runtime.kube.merge_patch(
                policy_status_path(name), {"status": status}
            )
        except ApiError as err:
            if err.not_found:
                return  # deleted meanwhile: its DELETED event follows
            logger.warning("could not write the status of MtlsPolicy %s: %s", name, err)
            self._lane.schedule(name, self._runtime.clock.time() + backoff.UNWRITTEN_STATUS)
            return
        self._tenancy.record_status(written)
