"""What the operator knows of the cluster: the MtlsCertificates and the
facts of the Secrets it manages, kept current by watch events and by the
responses to its own writes."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping, Sequence
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


class Store:
    def __init__(self, on_change: Callable[[ObjectKey], None]) -> None:
        self.certificates: dict[ObjectKey, CertificateRecord] = {}
        self.secrets: dict[ObjectKey, SecretFacts] = {}
        self._claimants: dict[ObjectKey, set[str]] = {}  # Secret -> certificates naming it
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
        if previous is not None:
            if previous.uid == record.uid and previous.generation == record.generation:
                record._parsed = previous._parsed
            record.failures = previous.failures if previous.uid == record.uid else 0
            self._unclaim(previous)
        self.certificates[record.key] = record
        self._by_namespace.setdefault(record.namespace, set()).add(record.name)
        if record.secret_name:
            self._claimants.setdefault((record.namespace, record.secret_name), set()).add(
                record.name
            )
        if notify:
            self._on_change(record.key)
        if previous is not None and previous.secret_name != record.secret_name:
            self._notify_claimants(previous)
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
        self._unclaim(record)
        self._notify_claimants(record)

    def keys_in(self, namespace: str | None) -> list[ObjectKey]:
        """The certificates of `namespace` (None: of every namespace)."""
        if namespace is None:
            return sorted(self.certificates)
        return [(namespace, name) for name in sorted(self._by_namespace.get(namespace, ()))]

    def _notify_claimants(self, departed: CertificateRecord) -> None:
        """A certificate stopped naming its Secret: another one naming the
        same Secret may take it over now."""
        if departed.secret_name:
            for name in self._claimants.get((departed.namespace, departed.secret_name), ()):
                self._on_change((departed.namespace, name))

    def older_claimant(self, record: CertificateRecord) -> str | None:
        """The oldest other certificate naming the same Secret, if older."""
        if not record.secret_name:
            return None
        others = [
            self.certificates[(record.namespace, name)]
            for name in self._claimants.get((record.namespace, record.secret_name), ())
            if name != record.name and (record.namespace, name) in self.certificates
        ]
        # The certificate the Secret was written for keeps it; among the
        # others the oldest wins, then the first by name (creation times are
        # whole seconds, so two applied together tie).
        secret = self.secrets.get((record.namespace, record.secret_name))
        holder = secret.annotations.get(CERTIFICATE_UID_ANNOTATION) if secret else None

        def rank(claimant: CertificateRecord) -> tuple[bool, str, str]:
            return (claimant.uid != holder, claimant.created, claimant.name)

        older = [o for o in others if rank(o) < rank(record)]
        return min(older, key=rank).name if older else None

    def _unclaim(self, record: CertificateRecord) -> None:
        if record.secret_name:
            claimants = self._claimants.get((record.namespace, record.secret_name))
            if claimants is not None:
                claimants.discard(record.name)
                if not claimants:
                    del self._claimants[(record.namespace, record.secret_name)]

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
        self.secrets[key] = facts
        if notify:
            self._notify_secret(key, facts)
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
        del self.secrets[key]
        self._notify_secret(key, current)

    def add_secrets(self, items: Sequence[Mapping[str, Any]]) -> set[ObjectKey]:
        listed = set()
        for body in items:
            listed.add(object_key(body))
            self.upsert_secret(body)
        return listed

    def drop_secrets_except(self, listed: set[ObjectKey], namespace: str | None) -> None:
        for key in list(self.secrets):
            if key not in listed and (namespace is None or key[0] == namespace):
                facts = self.secrets.pop(key)
                self._notify_secret(key, facts)

    def _notify_secret(self, key: ObjectKey, facts: SecretFacts) -> None:
        namespace = key[0]
        names = set(self._claimants.get(key, ()))
        owner = facts.annotations.get(CERTIFICATE_ANNOTATION)
        if owner:
            names.add(owner)
        for certificate in names:
            if (namespace, certificate) in self.certificates:
                self._on_change((namespace, certificate))


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
