"""What the operator knows of the cluster: the MtlsCertificates and the
facts of the Secrets it manages, kept current by watch events and by the
responses to its own writes."""

from __future__ import annotations

import datetime
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.api.kept import kept, kept_mapping
from mtls_operator.api.managed_secret import (
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    KnownKeyPair,
    SecretFacts,
    read_secret,
)
from mtls_operator.api.resources import RENEW_REQUESTED_ANNOTATION, CertificateRef
from mtls_operator.api.spec import CertificateSpec, InvalidSpec, parse_spec
from mtls_operator.runtime.kube import ObjectKey, object_key


@dataclass(slots=True)
class CertificateRecord:
    namespace: str
    name: str
    uid: str
    generation: int
    created: str
    resource_version: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str]
    # Parsed once per generation.
    _parsed: CertificateSpec | InvalidSpec | None = field(default=None, repr=False)
    # Consecutive failures, for the retry backoff; not persisted.
    failures: int = 0

    @property
    def key(self) -> ObjectKey:
        return (self.namespace, self.name)

    @property
    def ref(self) -> CertificateRef:
        return CertificateRef(
            self.namespace,
            self.name,
            self.uid,
            self.annotations.get(RENEW_REQUESTED_ANNOTATION) or None,
        )

    @property
    def status_revision(self) -> int:
        """How many times the status says the certificate was issued."""
        try:
            return int(self.status.get("revision") or 0)
        except (TypeError, ValueError):
            return 0

    @property
    def secret_name(self) -> str | None:
        name = self.spec.get("secretName")
        return name if isinstance(name, str) and name else None

    def metadata_only(self) -> dict[str, Any]:
        """Enough of the object to remove it from the store."""
        return {"metadata": {"namespace": self.namespace, "name": self.name, "uid": self.uid}}

    def parsed_spec(self, min_duration: datetime.timedelta) -> CertificateSpec:
        """The validated spec; raises InvalidSpec."""
        if self._parsed is None:
            try:
                self._parsed = parse_spec(self.spec, min_duration)
            except InvalidSpec as err:
                self._parsed = err
        if isinstance(self._parsed, InvalidSpec):
            raise self._parsed
        return self._parsed


def certificate_record(body: Mapping[str, Any]) -> CertificateRecord:
    metadata = body.get("metadata") or {}
    return CertificateRecord(
        namespace=kept(metadata.get("namespace", "")),
        name=metadata.get("name", ""),
        uid=kept(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 0),
        created=metadata.get("creationTimestamp", ""),
        resource_version=metadata.get("resourceVersion", ""),
        spec=kept_mapping(body.get("spec")),
        status=kept_mapping(body.get("status")),
        annotations=kept_mapping(metadata.get("annotations")),
    )


def newer(candidate: str, current: str) -> bool:
    """Whether resourceVersion `candidate` is newer than `current`. They are
    opaque strings in general but etcd revisions in practice; when they do
    not compare as numbers, the candidate wins."""
    try:
        return int(candidate) > int(current)
    except ValueError:
        return candidate != current


# How claimants of one Secret are ordered: the certificate the Secret was
# written for (its uid annotation) keeps it; among the others the oldest
# wins, then the first by name (creation times are whole seconds, so two
# applied together tie).
Rank = tuple[bool, str, str]


def claim_rank(record: CertificateRecord, holder: str | None) -> Rank:
    return (record.uid != holder, record.created, record.name)


@dataclass(slots=True)
class Claim:
    """The certificates naming one Secret, kept in rank order so that its
    owner is found without looking at the others (thousands of
    certificates may name one Secret)."""

    ordered: list[tuple[str, str]] = field(default_factory=list)  # (created, name)
    names_by_uid: dict[str, str] = field(default_factory=dict)

    def add(self, record: CertificateRecord) -> None:
        insort(self.ordered, (record.created, record.name))
        self.names_by_uid[record.uid] = record.name

    def discard(self, record: CertificateRecord) -> None:
        entry = (record.created, record.name)
        index = bisect_left(self.ordered, entry)
        if index < len(self.ordered) and self.ordered[index] == entry:
            del self.ordered[index]
        if self.names_by_uid.get(record.uid) == record.name:
            del self.names_by_uid[record.uid]

    def owner(self, holder: str | None) -> str | None:
        """The name of the claimant that owns the Secret, whose uid is
        `holder` if that one is a claimant."""
        if holder is not None and holder in self.names_by_uid:
            return self.names_by_uid[holder]
        return self.ordered[0][1] if self.ordered else None

    def __bool__(self) -> bool:
        return bool(self.ordered)


class Store:
    def __init__(self, on_change: Callable[[ObjectKey], None]) -> None:
        self.certificates: dict[ObjectKey, CertificateRecord] = {}
        self.secrets: dict[ObjectKey, SecretFacts] = {}
        self._claims: dict[ObjectKey, Claim] = {}  # Secret -> certificates naming it
        self._by_namespace: dict[str, set[str]] = {}
        self._on_change = on_change

    # --- Certificates. ---

    def upsert_certificate(
        self, body: Mapping[str, Any], *, notify: bool = True
    ) -> CertificateRecord | None:
        """Record a certificate; `notify=False` for the response to the
        operator's own write, which needs no second look."""
        metadata = body.get("metadata") or {}
        previous = self.certificates.get(object_key(body))
        if (
            previous is not None
            and previous.uid == metadata.get("uid", "")
            and not newer(metadata.get("resourceVersion", ""), previous.resource_version)
        ):
            return None  # before the record is built: most often the echo of our own write
        record = certificate_record(body)
        reclaimed = previous is None or _claims_differ(previous, record)
        claimed = _claimed(record.namespace, previous, record) if reclaimed else []
        owners_before = [self._owner(secret) for secret in claimed]
        if previous is not None:
            if previous.uid == record.uid and previous.generation == record.generation:
                record._parsed = previous._parsed
            record.failures = previous.failures if previous.uid == record.uid else 0
            if reclaimed:
                self._unclaim(previous)
        self.certificates[record.key] = record
        self._by_namespace.setdefault(record.namespace, set()).add(record.name)
        if reclaimed:
            self._claim(record)
        told: list[str] = []
        if notify:
            self._tell(record.namespace, (record.name,), told)
        # Whoever owns a Secret now, or owned it until now, looks again;
        # the other claimants' verdict is unchanged.
        for secret, before in zip(claimed, owners_before, strict=True):
            after = self._owner(secret)
            if after != before:
                skip = None if notify else record.name
                self._tell(record.namespace, (after, before), told, skip=skip)
        return record

    def remove_certificate(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        key = object_key(body)
        record = self.certificates.get(key)
        if record is None or record.uid != metadata.get("uid", record.uid):
            return
        del self.certificates[key]
        names = self._by_namespace.get(record.namespace)
        if names is not None:
            names.discard(record.name)
            if not names:
                del self._by_namespace[record.namespace]
        if record.secret_name:
            secret = (record.namespace, record.secret_name)
            before = self._owner(secret)
            self._unclaim(record)
            after = self._owner(secret)
            if after != before:
                self._tell(record.namespace, (after,))

    def keys_in(self, namespace: str | None) -> list[ObjectKey]:
        """The certificates of `namespace` (None: of every namespace)."""
        if namespace is None:
            return sorted(self.certificates)
        return [(namespace, name) for name in sorted(self._by_namespace.get(namespace, ()))]

    def older_claimant(self, record: CertificateRecord) -> str | None:
        """The other certificate naming the same Secret that owns it (it
        ranks before `record`, see `claim_rank`), if any."""
        if not record.secret_name:
            return None
        secret = (record.namespace, record.secret_name)
        owner = self._owner(secret)
        if owner is None or owner == record.name:
            return None
        owner_record = self.certificates.get((record.namespace, owner))
        if owner_record is None:
            return None
        holder = self._holder(secret)
        return owner if claim_rank(owner_record, holder) < claim_rank(record, holder) else None

    def _owner(self, secret: ObjectKey) -> str | None:
        claim = self._claims.get(secret)
        return claim.owner(self._holder(secret)) if claim else None

    def _holder(self, secret: ObjectKey) -> str | None:
        """The uid of the certificate the Secret says it was written for."""
        facts = self.secrets.get(secret)
        return facts.annotations.get(CERTIFICATE_UID_ANNOTATION) if facts else None

    def _claim(self, record: CertificateRecord) -> None:
        if record.secret_name:
            self._claims.setdefault((record.namespace, record.secret_name), Claim()).add(record)

    def _unclaim(self, record: CertificateRecord) -> None:
        if record.secret_name:
            secret = (record.namespace, record.secret_name)
            claim = self._claims.get(secret)
            if claim is not None:
                claim.discard(record)
                if not claim:
                    del self._claims[secret]

    def _tell(
        self,
        namespace: str,
        names: Iterable[str | None],
        told: list[str] | None = None,
        *,
        skip: str | None = None,
    ) -> None:
        """Wake the certificates `names` of `namespace` that exist, each once
        (`told` holds those woken already)."""
        told = [] if told is None else told
        for name in names:
            if name is None or name in told or name == skip:
                continue
            if (namespace, name) in self.certificates:
                told.append(name)
                self._on_change((namespace, name))

    # --- Secrets. ---

    def upsert_secret(
        self, body: Mapping[str, Any], known: KnownKeyPair | None = None, *, notify: bool = True
    ) -> SecretFacts | None:
        metadata = body.get("metadata") or {}
        key = object_key(body)
        current = self.secrets.get(key)
        version = metadata.get("resourceVersion", "")
        # Keep the newest state, also across a delete and re-create (new uid).
        if current is not None and not newer(version, current.resource_version):
            return None
        facts = read_secret(body, known)
        owner = self._owner(key)
        self.secrets[key] = facts
        if notify:
            self._notify_secret(key, facts, owner)
        return facts

    def remove_secret(self, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        key = object_key(body)
        current = self.secrets.get(key)
        if current is None:
            return
        if current.uid != metadata.get("uid") or newer(
            current.resource_version, metadata.get("resourceVersion", "")
        ):
            return  # the deletion of an earlier incarnation, or older than what we wrote since
        owner = self._owner(key)
        del self.secrets[key]
        self._notify_secret(key, current, owner)

    def add_secrets(self, items: Sequence[Mapping[str, Any]]) -> set[ObjectKey]:
        listed = set()
        for body in items:
            listed.add(object_key(body))
            self.upsert_secret(body)
        return listed

    def drop_secrets_except(self, listed: set[ObjectKey], namespace: str | None) -> None:
        for key in list(self.secrets):
            if key not in listed and (namespace is None or key[0] == namespace):
                owner = self._owner(key)
                facts = self.secrets.pop(key)
                self._notify_secret(key, facts, owner)

    def _notify_secret(self, key: ObjectKey, facts: SecretFacts, owner_before: str | None) -> None:
        """The Secret changed: the certificate it names and the claimant that
        owns it look again, and so does the one that owned it until now (the
        uid it carries decides a tie). The other claimants' verdict (someone
        else owns it) is unchanged, and their status names no owner."""
        named = facts.annotations.get(CERTIFICATE_ANNOTATION) or None
        self._tell(key[0], (named, self._owner(key), owner_before))


def _claims_differ(previous: CertificateRecord, record: CertificateRecord) -> bool:
    """Whether the Secret named, or the rank among its claimants, changed."""
    return (previous.secret_name, previous.created, previous.uid) != (
        record.secret_name,
        record.created,
        record.uid,
    )


def _claimed(
    namespace: str, previous: CertificateRecord | None, record: CertificateRecord
) -> list[ObjectKey]:
    """The Secrets named before and after, each once."""
    names = [r.secret_name for r in (previous, record) if r is not None and r.secret_name]
    return [(namespace, name) for name in dict.fromkeys(names)]


class SecretSink:
    """Feeds a reflector of managed Secrets into the store."""

    def __init__(self, store: Store, namespace: str | None) -> None:
        self._store = store
        self._namespace = namespace
        self._listed: set[ObjectKey] = set()

    def begin_relist(self) -> None:
        self._listed = set()

    def add_page(self, items: list[dict[str, Any]]) -> None:
        self._listed |= self._store.add_secrets(items)

    def end_relist(self) -> None:
        self._store.drop_secrets_except(self._listed, self._namespace)
        self._listed = set()

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self._store.remove_secret(obj)
        else:
            self._store.upsert_secret(obj)


CertificateEvents = Callable[[str, Mapping[str, Any]], None]


class CertificateSink:
    """Feeds a reflector of MtlsCertificates to the controller, page by page:
    a certificate missing from a re-list was deleted while the watch was
    down, and is handed over as a deletion."""

    def __init__(self, store: Store, namespace: str | None, on_event: CertificateEvents) -> None:
        self._store = store
        self._namespace = namespace
        self._on_event = on_event
        self._listed: set[ObjectKey] = set()

    def begin_relist(self) -> None:
        self._listed = set()

    def add_page(self, items: list[dict[str, Any]]) -> None:
        for body in items:
            self._listed.add(object_key(body))
            self._on_event("ADDED", body)

    def end_relist(self) -> None:
        for key in self._store.keys_in(self._namespace):
            if key not in self._listed:
                self._on_event("DELETED", self._store.certificates[key].metadata_only())
        self._listed = set()

    def apply(self, event_type: str, obj: dict[str, Any]) -> None:
        self._on_event(event_type, obj)
