"""Kubernetes Events: what `kubectl describe` shows about an object."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from typing import Any

from mtls_operator.api.paths import events_path
from mtls_operator.api.timestamps import format_timestamp
from mtls_operator.runtime.api_errors import ApiError
from mtls_operator.runtime.clock import Clock
from mtls_operator.runtime.kube import Kube

logger = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
COMPONENT = "mtls-operator"
_MAX_MESSAGE = 1024
_INSTANCE = socket.gethostname()


def event_body(
    involved: Mapping[str, str], event_type: str, reason: str, message: str, timestamp: str
) -> dict[str, Any]:
    """`involved`: apiVersion, kind, name, namespace and uid of the object."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": involved["namespace"]},
        "involvedObject": dict(involved),
        "type": event_type,
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": _INSTANCE,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, kube: Kube, clock: Clock) -> None:
        self._kube = kube
        self._clock = clock

    async def record(
        self, involved: Mapping[str, str], event_type: str, reason: str, message: str
    ) -> None:
        body = event_body(
            involved, event_type, reason, message, format_timestamp(self._clock.now())
        )
        try:
            await self._kube.create(events_path(involved["namespace"]), body)
        except ApiError as err:  # an event is worth less than the work it reports
            logger.warning(
                "could not record event %s for %s/%s: %s",
                reason,
                involved["namespace"],
                involved["name"],
                err,
            )
