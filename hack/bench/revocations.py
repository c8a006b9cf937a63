"""Scenario `revocations`: 10,000 client certificates of the cluster CA,
whose CRL is published in `mtls-ca-bundle` ConfigMaps of 100 namespaces.
1,000 of them are revoked together, as tenants ask (the two annotations
on each MtlsCertificate), then one more alone. It measures:
- the time until all 1,000 are recorded and re-issued, and until the CRL
  listing them is in the record and in every bundle;
- the CRL's size with 1,000 entries, and how often it was signed for them;
- the writes per revocation, by what they wrote (the API server's own
  request counter, split between the record and the bundles by watching
  them);
- for the one alone: the time from its annotation until every bundle lists
  it, and its writes (the target: one record entry, one CRL, one write per
  bundle, the re-issue and its Events)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mtls_operator.api.resources import certificates_path
from mtls_operator.api.revocations import (
    CRL_KEY,
    ENTRY_PREFIX,
    REVOKE_REASON_ANNOTATION,
    REVOKE_SERIAL_ANNOTATION,
    store_name,
)
from mtls_operator.api.trust_bundles import CONFIGMAP_NAME, configmaps_path
from mtls_operator.pki import CRLLoadError
from mtls_operator.pki.crl import RevocationReason, crl_facts
from mtls_operator.runtime.kube import Kube

from bench.background import Background, follow
from bench.figures import Figures, rss_target
from bench.metrics import RequestCounts, api_requests
from bench.parallel import in_parallel
from bench.profile_burst import cpu_by_process
from bench.ready_watch import ReadyWatch
from bench.stage import CLUSTER_CA, OPERATOR_NAMESPACE, Stage

NAMESPACE = "revocations"
PREFIX = "cert"
# Chooses the namespaces that get a bundle (--trust-bundle-namespace-selector).
BUNDLE_LABEL = "bench.mtls.dev/trust-bundle"
RECORD = (OPERATOR_NAMESPACE, store_name(CLUSTER_CA.split("/")[1]))
REASON = RevocationReason.KEY_COMPROMISE
# Nothing watched changed for this long: the revocations' writes are over.
QUIET_SECONDS = 5.0
TIMEOUT = 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--revocations-certificates",
        type=int,
        default=10000,
        help="revocations: client certificates of the cluster CA",
    )
    parser.add_argument(
        "--revocations-revoked",
        type=int,
        default=1000,
        help="revocations: of them, revoked together (then one more alone)",
    )
    parser.add_argument(
        "--revocations-namespaces",
        type=int,
        default=100,
        help="revocations: namespaces that get the bundle mtls-ca-bundle, with the CRL",
    )


def bundle_namespace(index: int) -> str:
    return f"{NAMESPACE}-bundle-{index}"


@dataclass(frozen=True)
class Listing:
    """What one CRL text says, and its size."""

    number: int
    serials: frozenset[int]
    pem_bytes: int
    der_bytes: int


@dataclass(frozen=True)
class Write:
    """One write of the record or of a bundle, as its watch showed it."""

    at: float  # monotonic
    key: tuple[str, str]  # namespace, name
    crl: Listing | None
    entries: frozenset[int]  # the record's revoked serials (a bundle has none)
    crl_changed: bool
    size: int  # bytes of its data, keys and values


class Published(Background):
    """Follows every ConfigMap and keeps each write of the cluster CA's
    record and of the bundles (each resourceVersion once, so that the
    lists after a broken watch count nothing twice)."""

    def __init__(self, kube: Kube) -> None:
        super().__init__()
        self.kube = kube
        self.writes: list[Write] = []
        self.latest: dict[tuple[str, str], Write] = {}
        self.last_change = time.monotonic()
        self._versions: dict[tuple[str, str], str] = {}
        self._listings: dict[str, Listing | None] = {"": None}

    async def _run(self) -> None:
        await follow(self.kube, configmaps_path(None), self._note)

    def _note(self, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        key = (str(metadata.get("namespace")), str(metadata.get("name")))
        if key != RECORD and key[1] != CONFIGMAP_NAME:
            return
        version = str(metadata.get("resourceVersion"))
        if self._versions.get(key) == version:
            return
        self._versions[key] = version
        data = obj.get("data") or {}
        crl = self._listing(str(data.get(CRL_KEY) or ""))
        entries = frozenset(
            int(name.removeprefix(ENTRY_PREFIX), 16)
            for name in data
            if key == RECORD and name.startswith(ENTRY_PREFIX)
        )
        before = self.latest.get(key)
        changed = before is None or before.crl != crl
        size = sum(len(name) + len(str(value)) for name, value in data.items())
        write = Write(time.monotonic(), key, crl, entries, changed, size)
        self.writes.append(write)
        self.latest[key] = write
        self.last_change = write.at

    def _listing(self, pem: str) -> Listing | None:
        if pem not in self._listings:
            try:
                facts = crl_facts(pem.encode())
            except CRLLoadError:
                self._listings[pem] = None
            else:
                der = len(_der(pem))
                listing = Listing(facts.number, frozenset(facts.serial_numbers), len(pem), der)
                self._listings[pem] = listing
        return self._listings[pem]

    def record(self) -> Write | None:
        return self.latest.get(RECORD)

    def record_crl(self) -> Listing:
        record = self.record()
        if record is None or record.crl is None:
            raise RuntimeError(f"ConfigMap {'/'.join(RECORD)} holds no CRL")
        return record.crl

    def bundles(self) -> list[Write]:
        return [w for key, w in self.latest.items() if key != RECORD]

    def all_bundles_list(self, serials: frozenset[int], count: int) -> bool:
        bundles = self.bundles()
        return len(bundles) >= count and all(
            w.crl is not None and serials <= w.crl.serials for w in bundles
        )

    def since(self, started: float) -> list[Write]:
        return [w for w in self.writes if w.at >= started]


def _der(pem: str) -> bytes:
    body = "".join(line for line in pem.splitlines() if line and not line.startswith("-----"))
    return base64.b64decode(body)


class Serials(ReadyWatch):
    """ReadyWatch that also keeps each certificate's serials as its status
    showed them, in order, with when each was first seen."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(kube, namespace)
        self.serials: dict[str, list[tuple[float, str]]] = {}
        self.last_change = time.monotonic()

    def _note(self, obj: dict[str, Any]) -> None:
        super()._note(obj)
        name = obj.get("metadata", {}).get("name")
        if name is None:
            return  # a bookmark
        self.last_change = time.monotonic()
        serial = (obj.get("status") or {}).get("serialNumber")
        if not serial:
            return
        seen = self.serials.setdefault(name, [])
        if not seen or seen[-1][1] != serial:
            seen.append((time.monotonic(), str(serial)))

    def current(self, name: str) -> str:
        return self.serials[name][-1][1]

    def replaced(self, name: str, serial: str) -> float | None:
        """When `name` was first seen holding a serial after `serial`."""
        seen = self.serials.get(name, [])
        for index, (_, held) in enumerate(seen):
            if held == serial and index + 1 < len(seen):
                return seen[index + 1][0]
        return None


async def until(done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def quiet(published: Published, serials: Serials) -> None:
    """Until neither the ConfigMaps nor the certificates changed for
    QUIET_SECONDS: the trailing writes (a retried CRL, Events) have landed."""
    await until(
        lambda: time.monotonic() - max(published.last_change, serials.last_change) > QUIET_SECONDS,
        TIMEOUT,
        "the writes to end",
    )


@dataclass(frozen=True)
class Sizes:
    certificates: int
    revoked: int
    namespaces: int


async def run(args: argparse.Namespace, figures: Figures) -> None:
    sizes = Sizes(
        args.revocations_certificates, args.revocations_revoked, args.revocations_namespaces
    )
    if not 0 < sizes.revoked < sizes.certificates:
        raise SystemExit("--revocations-revoked must be at least 1 and less than the certificates")
    stage = Stage(
        "revocations",
        [NAMESPACE],
        [
            "--namespace",
            NAMESPACE,
            "--trust-bundle-namespace-selector",
            f"{BUNDLE_LABEL}=true",
        ],
    )
    serials = Serials(stage.kube, NAMESPACE)
    published = Published(stage.kube)
    try:
        await in_parallel(
            sizes.namespaces,
            lambda i: stage.kube.create(
                "/api/v1/namespaces",
                {"metadata": {"name": bundle_namespace(i), "labels": {BUNDLE_LABEL: "true"}}},
            ),
        )
        await asyncio.sleep(2)  # discovery of the new kind
        published.start()
        stage.operator.start()
        serials.start()
        await stage.create(NAMESPACE, sizes.certificates, PREFIX, usage="client")
        await serials.wait(sizes.certificates, timeout=TIMEOUT)
        await until(
            lambda: published.all_bundles_list(frozenset(), sizes.namespaces),
            600,
            "every bundle with a CRL",
        )
        await quiet(published, serials)
        revoked = [f"{PREFIX}-{i}" for i in range(sizes.revoked)]
        burst = await revoke(stage, published, serials, sizes, revoked)
        note_burst(figures, sizes, burst)
        alone = await revoke(stage, published, serials, sizes, [f"{PREFIX}-{sizes.revoked}"])
        note_alone(figures, sizes, alone)
        figures.note_memory(
            f"operator RSS after the revocations, {sizes.certificates} certificates",
            stage.operator.memory_kib(),
            rss_target(sizes.certificates),
        )
    finally:
        await serials.stop()
        await published.stop()
        await stage.close()


@dataclass(frozen=True)
class Outcome:
    """One round of revocations: when each milestone was reached (seconds
    after the first annotation), and what was written meanwhile."""

    count: int
    recorded: float  # every entry in the record
    reissued: float  # every certificate holding a new serial
    signed: float  # the record's CRL listing them all
    first_bundle: float
    bundles: float  # every bundle's CRL listing them all
    crl: Listing
    signings: int  # CRL Number increase
    record_entry_writes: int
    crl_writes: int
    bundle_writes: int
    record_bytes: int  # data written to the record, summed over its writes
    bundle_bytes: int
    requests: RequestCounts
    cpu: dict[str, float]  # CPU-seconds by process, from the annotations to quiet


async def revoke(
    stage: Stage, published: Published, serials: Serials, sizes: Sizes, names: list[str]
) -> Outcome:
    """Annotate `names` (in parallel, as kubectl or GitOps would), wait
    until all are recorded, re-issued and published, then for quiet."""
    held = {name: serials.current(name) for name in names}
    wanted = frozenset(int(serial, 16) for serial in held.values())
    record_before = published.record()
    number_before = record_before.crl.number if record_before and record_before.crl else 0
    requests_before = api_requests(stage.kubectl)
    cpu_before = cpu_by_process(stage)
    started = time.monotonic()
    await in_parallel(
        len(names),
        lambda i: stage.kube.merge_patch(
            certificates_path(NAMESPACE, names[i]),
            {
                "metadata": {
                    "annotations": {
                        REVOKE_SERIAL_ANNOTATION: held[names[i]],
                        REVOKE_REASON_ANNOTATION: REASON.value,
                    }
                }
            },
        ),
    )

    def done() -> bool:
        record = published.record()
        return (
            record is not None
            and record.crl is not None
            and wanted <= record.crl.serials
            and all(serials.replaced(name, held[name]) is not None for name in names)
            and published.all_bundles_list(wanted, sizes.namespaces)
        )

    await until(done, TIMEOUT, f"{len(names)} revocations recorded, re-issued and published")
    await quiet(published, serials)
    await asyncio.sleep(2)  # Events, which are not watched
    requests = api_requests(stage.kubectl) - requests_before
    cpu_after = cpu_by_process(stage)
    writes = published.since(started)
    record_writes = [w for w in writes if w.key == RECORD]
    bundle_writes = [w for w in writes if w.key != RECORD]
    crl = published.record_crl()

    def first(found: Iterable[Write], holds: Callable[[Write], bool]) -> float:
        return min(w.at for w in found if holds(w)) - started

    per_bundle = [
        first((w for w in bundle_writes if w.key == key), lambda w: _lists(w, wanted))
        for key in {w.key for w in published.bundles()}
    ]
    reissued = [serials.replaced(name, held[name]) for name in names]
    return Outcome(
        count=len(names),
        recorded=first(record_writes, lambda w: wanted <= w.entries),
        reissued=max(at for at in reissued if at is not None) - started,
        signed=first(record_writes, lambda w: _lists(w, wanted)),
        first_bundle=min(per_bundle),
        bundles=max(per_bundle),
        crl=crl,
        signings=crl.number - number_before,
        record_entry_writes=sum(not w.crl_changed for w in record_writes),
        crl_writes=sum(w.crl_changed for w in record_writes),
        bundle_writes=len(bundle_writes),
        record_bytes=sum(w.size for w in record_writes),
        bundle_bytes=sum(w.size for w in bundle_writes),
        requests=requests,
        cpu={name: cpu_after[name] - cpu_before[name] for name in cpu_before},
    )


def _lists(write: Write, wanted: frozenset[int]) -> bool:
    return write.crl is not None and wanted <= write.crl.serials


@dataclass(frozen=True)
class WriteSplit:
    """The round's write requests by what they wrote."""

    record_entries: int
    crl: int
    bundles: int
    refused_configmaps: Counter[str]  # by code
    unchanged_configmaps: int  # answered but changing nothing, so not watched
    secrets: int
    status: int
    certificates: int  # the MtlsCertificates themselves, the bench's annotations left out
    events: int
    rest: Counter[str]

    @property
    def total(self) -> int:
        return (
            self.record_entries
            + self.crl
            + self.bundles
            + sum(self.refused_configmaps.values())
            + self.unchanged_configmaps
            + self.secrets
            + self.status
            + self.certificates
            + self.events
            + sum(self.rest.values())
        )

    def clauses(self) -> str:
        parts = [
            counted(self.record_entries, "record entry", "record entries"),
            counted(self.crl, "CRL write"),
            counted(self.bundles, "bundle write"),
            counted(self.secrets, "Secret write"),
            counted(self.status, "status write"),
            counted(self.events, "Event write"),
        ]
        parts += [
            counted(n, "ConfigMap write") + f" refused ({code})"
            for code, n in sorted(self.refused_configmaps.items())
        ]
        if self.unchanged_configmaps:
            unchanged = counted(self.unchanged_configmaps, "ConfigMap write")
            parts.append(f"{unchanged} changing nothing")
        if self.certificates:
            parts.append(counted(self.certificates, "MtlsCertificate write"))
        parts += [counted(n, f"{resource} write") for resource, n in sorted(self.rest.items())]
        return ", ".join(parts)


def split(outcome: Outcome) -> WriteSplit:
    requests = outcome.requests
    refused = requests.refused("configmaps")
    answered = requests.writes("configmaps") - sum(refused.values())
    watched = outcome.record_entry_writes + outcome.crl_writes + outcome.bundle_writes
    known = {"configmaps", "secrets", "mtlscertificates", "events"}
    return WriteSplit(
        record_entries=outcome.record_entry_writes,
        crl=outcome.crl_writes,
        bundles=outcome.bundle_writes,
        refused_configmaps=refused,
        unchanged_configmaps=answered - watched,
        secrets=requests.writes("secrets"),
        status=requests.writes("mtlscertificates", "status"),
        # The bench's own patches: one annotation each.
        certificates=requests.writes("mtlscertificates", "") - outcome.count,
        events=requests.writes("events"),
        rest=Counter(
            {
                resource: count
                for resource, count in requests.writes_by_resource().items()
                if resource not in known
            }
        ),
    )


def note_burst(figures: Figures, sizes: Sizes, outcome: Outcome) -> None:
    count, crl = outcome.count, outcome.crl
    figures.note(
        f"{count} of {sizes.certificates} certificates revoked together: "
        "all recorded and re-issued",
        f"{max(outcome.recorded, outcome.reissued):.1f} s",
        f"all in the record after {outcome.recorded:.1f} s, re-issued after "
        f"{outcome.reissued:.1f} s; the CRL listing them all signed after {outcome.signed:.1f} s, "
        f"in all {sizes.namespaces} bundles after {outcome.bundles:.1f} s",
        max(outcome.recorded, outcome.reissued),
        "s",
    )
    figures.note(
        f"CRL with {len(crl.serials)} entries",
        f"{crl.der_bytes} bytes",
        f"DER; {crl.pem_bytes} bytes PEM, as in the record and each bundle; "
        f"{crl.der_bytes / len(crl.serials):.0f} bytes DER a revocation",
        crl.der_bytes,
        "bytes",
    )
    figures.note(
        f"CRL signings for the {count} revocations",
        f"{outcome.signings}",
        "the CRL Number's increase; each signing is written to the record and to every bundle",
        outcome.signings,
        "signings",
    )
    cpu = outcome.cpu
    figures.note(
        f"CPU spent on the {count} revocations",
        f"{sum(cpu.values()):.0f} s",
        ", ".join(f"{name} {seconds:.0f} s" for name, seconds in cpu.items())
        + " (the client is this bench, following every ConfigMap write)",
        sum(cpu.values()),
        "CPU-seconds",
    )
    writes = split(outcome)
    figures.note(
        f"writes for the {count} revocations, per revocation",
        f"{writes.total / count:.2f}",
        f"{writes.clauses()}; {writes.bundles / sizes.namespaces:.1f} writes of each bundle; "
        f"{outcome.requests.reads('configmaps')} ConfigMap reads; {mib(outcome.record_bytes)} "
        f"written to the record, {mib(outcome.bundle_bytes)} to the bundles",
        writes.total / count,
        "writes",
    )


def note_alone(figures: Figures, sizes: Sizes, outcome: Outcome) -> None:
    figures.note(
        f"one revocation, from its annotation to its CRL in all {sizes.namespaces} bundles",
        f"{outcome.bundles:.2f} s",
        f"recorded after {outcome.recorded:.2f} s, the CRL signed after {outcome.signed:.2f} s, "
        f"the first bundle after {outcome.first_bundle:.2f} s; re-issued after "
        f"{outcome.reissued:.2f} s",
        outcome.bundles,
        "s",
    )
    writes = split(outcome)
    figures.note(
        "writes for that one revocation",
        f"{writes.total}",
        f"{writes.clauses()}; {mib(outcome.bundle_bytes)} written to the bundles; "
        f"target 1 record entry + 1 CRL + {sizes.namespaces} bundles + the "
        "re-issue (Secret, status) + Events",
        writes.total,
        "writes",
    )


def counted(count: int, singular: str, plural: str = "") -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
