"""The MtlsCertificates as the controller reads them (`CertificateRecord`),
and which certificate owns a Secret that several name (`Store`)."""

from __future__ import annotations

import datetime
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.api.kept import kept, kept_mapping
from mtls_operator.api.managed_secret import (
    CERTIFICATE_ANNOTATION,
    CERTIFICATE_UID_ANNOTATION,
    SecretFacts,
)
from mtls_operator.api.resources import RENEW_REQUESTED_ANNOTATION, CertificateRef
from mtls_operator.api.spec import CertificateSpec, InvalidSpec, parse_spec
from mtls_operator.runtime.cache import Change, InformerGroup
from mtls_operator.runtime.kube import ObjectKey


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


def record_version(record: CertificateRecord) -> str:
    return record.resource_version


def certificate_record(body: Mapping[str, Any]) -> CertificateRecord:
    metadata = body.get("metadata") or {}
    return CertificateRecord(
        namespace=kept(metadata.get("namespace", "")),
        name=metadata.get("name", ""),
        uid=kept(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 0),
        # A burst creates thousands in the same second.
        created=kept(metadata.get("creationTimestamp", "")),
        resource_version=metadata.get("resourceVersion", ""),
        spec=kept_mapping(body.get("spec")),
        status=kept_mapping(body.get("status")),
        annotations=kept_mapping(metadata.get("annotations")),
    )


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


NAMESPACE_INDEX = "namespace"


def _namespace(record: CertificateRecord) -> tuple[str]:
    return (record.namespace,)


class Store:
    """What the certificate controller reads of the shared cache: the
    MtlsCertificates, the facts of the Secrets the operator manages, and,
    kept here because only this controller ranks them, the claimants of
    each Secret. Every change wakes (`wake`) the certificates whose verdict
    it may change, and only those."""

    def __init__(
        self,
        certificates: InformerGroup[CertificateRecord],
        secrets: InformerGroup[SecretFacts],
        wake: Callable[[ObjectKey], None],
    ) -> None:
        self.certificates = certificates
        self.secrets = secrets
        self._claims: dict[ObjectKey, Claim] = {}  # Secret -> certificates naming it
        self._wake = wake
        certificates.add_index(NAMESPACE_INDEX, _namespace)

    def follow(self) -> None:
        """Hear the changes from now on (first, an ADDED for each certificate
        held), the Secrets' before the certificates' so that no certificate
        is judged before the Secrets are ranked."""
        self.secrets.subscribe(self._secret_changed)
        self.certificates.subscribe(self._certificate_changed)

    def keys_in(self, namespace: str) -> list[ObjectKey]:
        return sorted(self.certificates.keys_by(NAMESPACE_INDEX, namespace))

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

    def _certificate_changed(self, change: Change[CertificateRecord]) -> None:
        namespace, name = change.key
        previous, record = change.old, change.new
        if record is None:  # deleted
            self._wake(change.key)
            if previous is not None and previous.secret_name:
                secret = (namespace, previous.secret_name)
                before = self._owner(secret)
                self._unclaim(previous)
                after = self._owner(secret)
                if after != before:
                    self._tell(namespace, (after,))
            return
        reclaimed = previous is None or _claims_differ(previous, record)
        claimed = _claimed(namespace, previous, record) if reclaimed else []
        owners_before = [self._owner(secret) for secret in claimed]
        if previous is not None and reclaimed:
            self._unclaim(previous)
        if reclaimed:
            self._claim(record)
        told: list[str] = []
        if not change.ours or (previous is not None and _changed_under_us(previous, record)):
            self._tell(namespace, (name,), told)
        # Whoever owns a Secret now, or owned it until now, looks again;
        # the other claimants' verdict is unchanged.
        for secret, before in zip(claimed, owners_before, strict=True):
            after = self._owner(secret)
            if after != before:
                skip = name if change.ours else None
                self._tell(namespace, (after, before), told, skip=skip)

    def _secret_changed(self, change: Change[SecretFacts]) -> None:
        """The Secret changed: the certificate it names and the claimant that
        owns it look again, and so does the one that owned it until now (the
        uid it carries decides a tie). The other claimants' verdict (someone
        else owns it) is unchanged, and their status names no owner. The
        operator's own writes are its own doing: no one looks again."""
        if change.ours:
            return
        claim = self._claims.get(change.key)
        owners = (
            (claim.owner(_uid_written_for(change.old)), claim.owner(_uid_written_for(change.new)))
            if claim
            else ()
        )
        named = change.latest.annotations.get(CERTIFICATE_ANNOTATION) or None
        self._tell(change.key[0], (named, *owners))

    def _owner(self, secret: ObjectKey) -> str | None:
        claim = self._claims.get(secret)
        return claim.owner(self._holder(secret)) if claim else None

    def _holder(self, secret: ObjectKey) -> str | None:
        """The uid of the certificate the Secret says it was written for."""
        return _uid_written_for(self.secrets.get(secret))

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
            if self.certificates.get((namespace, name)) is not None:
                told.append(name)
                self._wake((namespace, name))


def _uid_written_for(facts: SecretFacts | None) -> str | None:
    return facts.annotations.get(CERTIFICATE_UID_ANNOTATION) if facts else None


def _changed_under_us(previous: CertificateRecord, record: CertificateRecord) -> bool:
    """The answer to our status write shows a change of someone else's
    between our read and the write (a new spec, a renewal request): its
    own watch event, older than our write, will be passed over."""
    return (previous.generation, previous.annotations) != (record.generation, record.annotations)


def after_write(previous: CertificateRecord, body: Mapping[str, Any]) -> CertificateRecord:
    """The record of the answer to a status write, with the spec parsed
    already when the write did not change it."""
    record = certificate_record(body)
    if (previous.uid, previous.generation) == (record.uid, record.generation):
        record._parsed = previous._parsed
    if previous.name == record.name:
        # The cache keeps the key it was first given, which holds the
        # previous record's copy of the name: one copy, not two.
        record.name = previous.name
    return record


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
