"""The decision for one workload that asks to be rolled when what it mounts
changes (`mtls.dev/reload`): record it, roll it, wait, or nothing to do.

What the workload's pods should run is summed up by a digest of the
content identity of what they mount: each managed Secret's certificate
serial and the fingerprint of its ca.crt, each trust bundle's fingerprint.
A drift repair (labels, owners, output formats) changes none of them, so it
never rolls anything. The digest the pods run is recorded on the workload;
the decision compares the two.

One frozen input goes through an ordered chain of small pure checks; the
first that answers wins, and a workload none of them holds back is rolled.
Time is part of the input, never read inside a check.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# 64 bits: the digest is only ever compared with the workload's previous one.
DIGEST_LENGTH = 16


class MountKind(enum.StrEnum):
    SECRET = "Secret"
    CONFIG_MAP = "ConfigMap"


@dataclass(frozen=True)
class Mounted:
    """The content identity of one thing a workload mounts that the operator
    manages. Secrets it does not manage are left out: what changes in them
    is not the operator's to roll for."""

    kind: MountKind
    name: str
    serial: str | None
    ca_fingerprint: str

    @classmethod
    def secret(cls, name: str, serial: str, ca_fingerprint: str) -> Mounted:
        """A certificate's Secret: a new serial is a re-issuance, a new
        ca.crt fingerprint a changed trust bundle."""
        return cls(MountKind.SECRET, name, serial, ca_fingerprint)

    @classmethod
    def trust_bundle(cls, name: str, fingerprint: str) -> Mounted:
        """A trust-bundle ConfigMap (mtls-ca-bundle): it has no serial."""
        return cls(MountKind.CONFIG_MAP, name, None, fingerprint)


def digest(mounted: Iterable[Mounted]) -> str:
    """What the pods should run, whatever the order the mounts were found
    in or how often one is named. Pinned by a test: a change of what is
    hashed would roll every workload that follows reloads on upgrade."""
    material = sorted({(m.kind.value, m.name, m.serial or "", m.ca_fingerprint) for m in mounted})
    encoded = json.dumps(material, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:DIGEST_LENGTH]


class WaitReason(enum.StrEnum):
    ROLLING = "Rolling"
    COALESCING = "Coalescing"
    RATE_LIMITED = "RateLimited"


@dataclass(frozen=True)
class Input:
    # The digest the pods run, as recorded on the workload; None when the
    # workload was never recorded.
    recorded: str | None
    # The digest of what the workload mounts now.
    wanted: str
    # Whether a rollout of the workload is still under way.
    rolling: bool
    # When the wanted digest was first seen to differ from the recorded
    # one. Kept while they differ, whatever the wanted digest becomes
    # meanwhile: changes that arrive one after another are rolled together
    # at the window's end, and a steady stream of them cannot put the roll
    # off for ever. None: first seen now.
    differs_since: datetime.datetime | None
    now: datetime.datetime
    window: datetime.timedelta
    # When the operator-wide bucket has a token for this workload; None, or
    # a time not after now, when it has one now (see `needs_turn`).
    turn: datetime.datetime | None = None


@dataclass(frozen=True)
class Roll:
    """Patch the pod template (and the record) with the digest."""

    digest: str


@dataclass(frozen=True)
class Record:
    """Record the digest on the workload only: its pods stay."""

    digest: str


@dataclass(frozen=True)
class Wait:
    """Look again at `until`; None: when the workload changes (its watch
    brings it back)."""

    until: datetime.datetime | None
    reason: WaitReason


@dataclass(frozen=True)
class UpToDate:
    pass


Decision = Roll | Record | Wait | UpToDate
Check = Callable[[Input], Decision | None]


def first_sight(given: Input) -> Decision | None:
    """A workload never recorded is recorded, not rolled: asking for
    reloads restarts nothing, and the pods it has were started with what
    is mounted now."""
    return Record(given.wanted) if given.recorded is None else None


def up_to_date(given: Input) -> Decision | None:
    return UpToDate() if given.recorded == given.wanted else None


def still_rolling(given: Input) -> Decision | None:
    """A rollout under way is not started over: the pods it brings up
    mount what is there now, and the roll that may still be needed waits
    until they are all up."""
    return Wait(None, WaitReason.ROLLING) if given.rolling else None


def coalescing(given: Input) -> Decision | None:
    """Certificates that change together (a CA rotation, several renewals
    due together) roll the workload once, at the end of the window."""
    since = given.differs_since if given.differs_since is not None else given.now
    end = since + given.window
    return Wait(end, WaitReason.COALESCING) if given.now < end else None


def rate_limited(given: Input) -> Decision | None:
    """Rolls are spread out operator-wide: a CA rotation must not restart
    every workload of the cluster in the same minute."""
    if given.turn is None or given.turn <= given.now:
        return None
    return Wait(given.turn, WaitReason.RATE_LIMITED)


CHECKS: tuple[Check, ...] = (first_sight, up_to_date, still_rolling, coalescing, rate_limited)


def decide(given: Input) -> Decision:
    for check in CHECKS:
        decision = check(given)
        if decision is not None:
            return decision
    return Roll(given.wanted)


def needs_turn(given: Input) -> bool:
    """Whether only the bucket stands between the workload and a roll.
    Ask the bucket for a turn then and only then: a token taken for a
    workload that waits anyway, or has nothing to roll, is spent for
    nothing."""
    return isinstance(decide(dataclasses.replace(given, turn=None)), Roll)
