"""The bare client the operator is measured against: for each certificate,
apply it, then write its Secret, its status and one Event, with no reading
and no crypto. What it writes comes in two sizes: `minimal()` (a Secret of
a real one's size, one condition), and `BareWrites.copied` (the bodies the
operator wrote for one certificate, with the name and uid of each)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.managed_secret import CERTIFICATE_ANNOTATION, CERTIFICATE_UID_ANNOTATION
from mtls_operator.api.paths import events_path, secrets_path
from mtls_operator.api.resources import CertificateRef, certificates_path
from mtls_operator.runtime.kube import Kube

from bench.parallel import in_parallel
from bench.ready_watch import ReadyWatch, is_ready
from bench.stage import burst_names, certificate

# The sizes of a real ECDSA Secret's values.
SAMPLE_SECRET = {
    "tls.crt": base64.b64encode(b"x" * 1400).decode(),
    "tls.key": base64.b64encode(b"k" * 240).decode(),
    "ca.crt": base64.b64encode(b"c" * 700).decode(),
}
SAMPLE = "bare-sample"
# What the API server fills in on an Event, not its writer.
_SERVER_FIELDS = frozenset({"metadata", "eventTime"})


@dataclass(frozen=True)
class BareWrites:
    """What the bare client writes for each certificate: the Secret's
    metadata and data, the status, and the Event, renamed for each."""

    secret_metadata: Mapping[str, Any]
    data: Mapping[str, str]
    status: Mapping[str, Any]
    event: Mapping[str, Any]

    @classmethod
    async def copied(cls, kube: Kube, namespace: str) -> BareWrites:
        """The bodies of one certificate the operator issues in `namespace`
        (it must be watching it): the same bytes, without reading or signing."""
        await kube.create(certificates_path(namespace), certificate(SAMPLE, namespace))
        path = certificates_path(namespace, SAMPLE)
        while not is_ready(status := (await kube.get(path) or {}).get("status") or {}):
            await asyncio.sleep(0.1)
        secret = await kube.get(secrets_path(namespace, f"{SAMPLE}-tls")) or {}
        about_sample = {"fieldSelector": f"involvedObject.name={SAMPLE}"}
        # The Event is written after the status.
        while not (events := (await kube.list(events_path(namespace), about_sample))[0]):
            await asyncio.sleep(0.1)
        kept = {"labels", "annotations", "ownerReferences"}
        return cls(
            {key: value for key, value in secret["metadata"].items() if key in kept},
            secret["data"],
            status,
            {key: value for key, value in events[0].items() if key not in _SERVER_FIELDS},
        )

    def secret(self, owner: CertificateRef) -> dict[str, Any]:
        metadata: dict[str, Any] = {**self.secret_metadata, "name": f"{owner.name}-tls"}
        annotations = metadata.get("annotations") or {}
        if CERTIFICATE_ANNOTATION in annotations:
            metadata["annotations"] = {
                **annotations,
                CERTIFICATE_ANNOTATION: owner.name,
                CERTIFICATE_UID_ANNOTATION: owner.uid,
            }
        if "ownerReferences" in metadata:
            metadata["ownerReferences"] = [owner.owner_reference()]
        return {"metadata": metadata, "type": "kubernetes.io/tls", "data": dict(self.data)}

    def event_about(self, owner: CertificateRef) -> dict[str, Any]:
        return {
            **self.event,
            "metadata": {"generateName": f"{owner.name}."},
            "involvedObject": owner.involved_object(),
        }


def minimal() -> BareWrites:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {"type": "Ready", "status": "True", "reason": "Issued", "message": "baseline"}
    return BareWrites(
        {"labels": {"app.kubernetes.io/managed-by": "baseline"}},
        SAMPLE_SECRET,
        {"conditions": [{**ready, "lastTransitionTime": now}]},
        {"reason": "Issued", "message": "baseline", "type": "Normal"},
    )


async def baseline(
    kube: Kube,
    namespace: str,
    count: int,
    prefix: str,
    *,
    observer: ReadyWatch | None = None,
    writes: BareWrites | None = None,
) -> float:
    """Issuances/s of the bare client writing `writes` (`minimal()` unless
    given), timed like the operator: from the first create until `observer`
    (a watch of `namespace`, started before) has seen every one Ready;
    without one, until the last write."""
    bodies = writes or minimal()
    started = time.monotonic()

    async def apply_and_issue(index: int) -> None:
        name = f"{prefix}-{index}"
        created = await kube.create(certificates_path(namespace), certificate(name, namespace))
        owner = CertificateRef(namespace, name, created["metadata"]["uid"])
        await kube.create(secrets_path(namespace), bodies.secret(owner))
        await kube.merge_patch(
            certificates_path(namespace, name, "status"), {"status": dict(bodies.status)}
        )
        await kube.create(events_path(namespace), bodies.event_about(owner))

    await in_parallel(count, apply_and_issue)
    finished = time.monotonic()
    if observer is not None:
        finished = await observer.wait(burst_names(prefix, count))
    return count / (finished - started)


async def observed_baseline(
    kube: Kube, namespace: str, count: int, prefix: str, *, writes: BareWrites | None = None
) -> float:
    """`baseline`, timed by a watch of `namespace` opened for it, as the
    operator's bursts are timed."""
    observer = ReadyWatch(kube, namespace)
    observer.start()
    try:
        return await baseline(kube, namespace, count, prefix, observer=observer, writes=writes)
    finally:
        await observer.stop()
