"""Namespaces and MtlsPolicies, as the identity policy judges certificates
against them: which policies select which namespace, kept current by two
watches of the runtime's own (listed in full before the first certificate
is judged, so that no certificate is refused for a moment at start-up).

Whoever judges a namespace's certificates subscribes, and is told the
namespace whenever the policies that select it, or their grants, change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from mtls_operator.api.mtls_policy import InvalidPolicy, LabelSelector, PolicySpec, parse_policy
from mtls_operator.api.paths import core_path
from mtls_operator.api.resources import policies_path
from mtls_operator.pki.names import is_dns_name
from mtls_operator.policy.identity import IdentityMode, IdentityRules
from mtls_operator.runtime.cache import Change
from mtls_operator.runtime.core import Runtime

logger = logging.getLogger(__name__)

NAMESPACES_PATH = core_path("namespaces")
POLICIES_PATH = policies_path()


@dataclass(frozen=True)
class IdentitySettings:
    mode: IdentityMode = IdentityMode.NAMESPACE
    cluster_domain: str = "cluster.local"
    trust_domain: str = "cluster.local"

    @classmethod
    def parse(
        cls, mode: str, cluster_domain: str, trust_domain: str | None = None
    ) -> IdentitySettings:
        """From the command line; the trust domain defaults to the cluster
        domain. Raises ValueError naming the flag."""
        for flag, value in (("--cluster-domain", cluster_domain), ("--trust-domain", trust_domain)):
            if value is not None and not is_dns_name(value):
                raise ValueError(f"{flag} {value!r}: must be a DNS name such as cluster.local")
        domain = cluster_domain.lower()
        return cls(IdentityMode(mode), domain, (trust_domain or domain).lower())

    def rules(self, namespace: str, policies: tuple[PolicySpec, ...]) -> IdentityRules:
        return IdentityRules(namespace, self.cluster_domain, self.trust_domain, policies)


@dataclass(frozen=True)
class PolicyRecord:
    name: str
    uid: str
    generation: int
    status: Mapping[str, Any]
    parsed: PolicySpec | InvalidPolicy


def policy_record(body: Mapping[str, Any]) -> PolicyRecord:
    metadata = body.get("metadata") or {}
    name = str(metadata.get("name", ""))
    try:
        parsed: PolicySpec | InvalidPolicy = parse_policy(name, body.get("spec") or {})
    except InvalidPolicy as err:
        parsed = err
    return PolicyRecord(
        name=name,
        uid=str(metadata.get("uid", "")),
        generation=int(metadata.get("generation") or 0),
        status=dict(body.get("status") or {}),
        parsed=parsed,
    )


def namespace_labels(body: Mapping[str, Any]) -> dict[str, str]:
    return dict((body.get("metadata") or {}).get("labels") or {})


class Tenancy:
    def __init__(self, runtime: Runtime, settings: IdentitySettings) -> None:
        self._runtime = runtime
        self.settings = settings
        self._selecting: dict[str, tuple[str, ...]] = {}  # namespace -> policy names
        self._namespace_subscribers: list[Callable[[str], None]] = []
        self._policy_subscribers: list[Callable[[str], None]] = []
        self._label_subscribers: list[Callable[[str], None]] = []
        # Each namespace's labels, each policy as read (fed by their watches,
        # or by tests directly). Without the MtlsPolicy CRD there are no
        # policies (nobody could have created one): judged by the namespace
        # default meanwhile.
        self.namespace_informer = runtime.cache.informer(
            "watch-namespaces", NAMESPACES_PATH, namespace_labels, absent_is_empty=True
        )
        self.policy_informer = runtime.cache.informer(
            "watch-mtlspolicies", POLICIES_PATH, policy_record, absent_is_empty=True
        )
        self.namespace_informer.subscribe(self._namespace_changed)
        self.policy_informer.subscribe(self._policy_seen)

    async def start(self) -> None:
        """Return once namespaces and policies are both listed. Safe to call
        again (kopf retries start-up): the cache starts its watches once."""
        self._runtime.cache.start()
        await self.namespace_informer.synced()
        await self.policy_informer.synced()
        logger.info(
            "identity policy %s: %d MtlsPolicies, %d namespaces",
            self.settings.mode,
            len(self.policy_informer),
            len(self.namespace_informer),
        )

    def on_namespace_change(self, callback: Callable[[str], None]) -> None:
        """`callback(namespace)` when the policies that select it change."""
        self._namespace_subscribers.append(callback)

    def on_policy_change(self, callback: Callable[[str], None]) -> None:
        """`callback(policy name)` when a policy, or what it selects, changes."""
        self._policy_subscribers.append(callback)

    def on_labels_change(self, callback: Callable[[str], None]) -> None:
        """`callback(namespace)` when a namespace appears, goes, or is relabelled."""
        self._label_subscribers.append(callback)

    def namespaces(self, selector: LabelSelector) -> list[str]:
        """The namespaces `selector` selects now."""
        return sorted(
            ns for (_, ns), labels in self.namespace_informer.items() if selector.matches(labels)
        )

    def selects(self, selector: LabelSelector, namespace: str) -> bool:
        labels = self._labels(namespace)
        return labels is not None and selector.matches(labels)

    def rules_for(self, namespace: str) -> IdentityRules | None:
        """What certificates of `namespace` signed by the cluster CA may carry;
        None when the identity policy is open."""
        if self.settings.mode is IdentityMode.OPEN:
            return None
        policies = tuple(
            record.parsed
            for name in self._selecting_policies(namespace)
            if (record := self.policy(name)) is not None and isinstance(record.parsed, PolicySpec)
        )
        return self.settings.rules(namespace, policies)

    def knows(self, namespace: str) -> bool:
        """Whether `namespace`'s labels are known, or need not be (the
        identity policy is open). A namespace created a moment ago may not
        have come through the watch yet: judged with no labels, NotIn and
        DoesNotExist selectors would choose it, so its requests wait for it."""
        return self.settings.mode is IdentityMode.OPEN or self._labels(namespace) is not None

    def policy(self, name: str) -> PolicyRecord | None:
        return self.policy_informer.get(("", name))

    def policy_names(self) -> list[str]:
        return sorted(name for _, name in self.policy_informer)

    def selected_namespaces(self, name: str) -> list[str]:
        record = self.policy(name)
        if record is None or not isinstance(record.parsed, PolicySpec):
            return []
        return self.namespaces(record.parsed.selector)

    def record_status(self, body: Mapping[str, Any]) -> None:
        """The response to the operator's own status write: its status only.
        The response may already carry a newer spec (someone edited the
        policy meanwhile); that spec is taken from its watch event, which
        must not then pass for a status change."""
        metadata = body.get("metadata") or {}
        uid, status = str(metadata.get("uid", "")), dict(body.get("status") or {})
        self.policy_informer.amend(
            ("", str(metadata.get("name", ""))),
            lambda held: replace(held, status=status) if held.uid == uid else held,
        )

    def _labels(self, namespace: str) -> dict[str, str] | None:
        return self.namespace_informer.get(("", namespace))

    def _selecting_policies(self, namespace: str) -> tuple[str, ...]:
        cached = self._selecting.get(namespace)
        labels = self._labels(namespace)
        if labels is None:
            return ()  # unknown labels select nothing: policies only ever grant
        if cached is None:
            cached = tuple(
                name
                for (_, name), record in sorted(self.policy_informer.items())
                if isinstance(record.parsed, PolicySpec) and record.parsed.selector.matches(labels)
            )
            self._selecting[namespace] = cached
        return cached

    # --- Watch events. ---

    def _namespace_changed(self, change: Change[dict[str, str]]) -> None:
        if change.old != change.new:  # labels, not annotations or status
            self._relabelled(change.key[1])

    def _relabelled(self, namespace: str) -> None:
        self._reselect(namespace)
        for callback in self._label_subscribers:
            callback(namespace)

    def _reselect(self, namespace: str) -> None:
        before = self._selecting.pop(namespace, ())
        after = self._selecting_policies(namespace)
        if before != after:
            self._notify_namespace(namespace)
            for policy in set(before) ^ set(after):
                self._notify_policy(policy)

    def _policy_seen(self, change: Change[PolicyRecord]) -> None:
        previous, record = change.old, change.new
        if (
            previous is not None
            and record is not None
            and previous.uid == record.uid
            and previous.generation == record.generation
        ):
            return  # a status change, often our own: grants are the same
        self._policy_changed(change.key[1], previous)

    def _policy_changed(self, name: str, previous: PolicyRecord | None) -> None:
        """Only the namespaces selected before or after are judged again."""
        self._selecting.clear()
        affected = set(self.selected_namespaces(name))
        if previous is not None and isinstance(previous.parsed, PolicySpec):
            selector = previous.parsed.selector
            affected.update(self.namespaces(selector))
        for namespace in sorted(affected):
            self._notify_namespace(namespace)
        self._notify_policy(name)

    def _notify_namespace(self, namespace: str) -> None:
        for callback in self._namespace_subscribers:
            callback(namespace)

    def _notify_policy(self, name: str) -> None:
        for callback in self._policy_subscribers:
            callback(name)
