"""Kubernetes Events about MtlsCertificates: what `kubectl describe` shows."""

from __future__ import annotations

import datetime
import socket
from typing import Any

from mtls_operator.resources import API_VERSION, KIND
from mtls_operator.secrets import MANAGER, format_timestamp

NORMAL = "Normal"
WARNING = "Warning"
_MAX_MESSAGE = 1024
_INSTANCE = socket.gethostname()


def event_body(
    *,
    namespace: str,
    name: str,
    uid: str,
    event_type: str,
    reason: str,
    message: str,
    now: datetime.datetime,
) -> dict[str, Any]:
    timestamp = format_timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": name,
            "namespace": namespace,
            "uid": uid,
        },
        "type": event_type,
        "reason": reason,
        "message": message[:_MAX_MESSAGE],
        "source": {"component": MANAGER},
        "reportingComponent": MANAGER,
        "reportingInstance": _INSTANCE,
        "firstTimestamp": timestamp,
        "lastTimestamp": timestamp,
        "count": 1,
    }
