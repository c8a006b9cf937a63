"""The identity policy: which identities a certificate signed by the cluster
CA may carry. With mTLS the CA's signature is the authentication, so a
namespace may hold only its own identities unless an MtlsPolicy grants more.

Pure: the rules of a namespace come in as an `IdentityRules` value (its
name, the cluster's domains, the policies that select it); every identity
of a request gets a verdict naming the rule that allows it, or why none does.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from mtls_operator.api.durations import format_duration
from mtls_operator.api.fields import is_object_name
from mtls_operator.api.mtls_policy import Grants, PolicySpec
from mtls_operator.api.status import Reason
from mtls_operator.pki import LeafRequest
from mtls_operator.pki.names import is_dns_name, is_ip_address, parse_ip_address
from mtls_operator.policy.violation import Violation

_IN_THE_SAN = (
    "; a server certificate's Common Name that is a host name or IP address is also "
    "written into its SAN, so allow.commonNames does not grant it"
)


class IdentityMode(enum.StrEnum):
    NAMESPACE = "namespace"  # namespace-bound identities, plus what policies grant
    OPEN = "open"  # anything: single-tenant clusters only


@dataclass(frozen=True)
class IdentityRules:
    """What a certificate of `namespace` signed by the cluster CA may carry."""

    namespace: str
    cluster_domain: str
    trust_domain: str
    # The MtlsPolicies whose namespaceSelector selects the namespace.
    policies: tuple[PolicySpec, ...] = ()

    @property
    def dns_suffixes(self) -> tuple[str, ...]:
        return (f".{self.namespace}.svc", f".{self.namespace}.svc.{self.cluster_domain}")

    @property
    def spiffe_prefix(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/"

    def owns_dns_name(self, name: str) -> bool:
        return any(name.lower().endswith(suffix) for suffix in self.dns_suffixes)

    def owns_uri(self, uri: str) -> bool:
        """A SPIFFE ID of one of the namespace's service accounts. The account
        need not exist: only the namespace's own users can create it, and
        GitOps tools apply objects in any order."""
        account = uri.removeprefix(self.spiffe_prefix)
        return (
            uri.startswith(self.spiffe_prefix)
            # A ServiceAccount name, as the API server checks it.
            and is_object_name(account)
        )


@dataclass(frozen=True)
class Verdict:
    field: str  # under spec., e.g. dnsNames
    value: str
    allowed: bool
    rule: str  # the rule that allows it, or why nothing does


def issued_request(request: LeafRequest, rules: IdentityRules | None) -> LeafRequest:
    """The request as signed: under the identity policy the subject's only
    Organization is the namespace, set by the operator, so that a server
    authorising on (CN, O) cannot be fooled by another namespace."""
    if rules is None:
        return request
    subject = replace(request.subject, organizations=(rules.namespace,))
    return replace(request, subject=subject)


def identity_violation(request: LeafRequest, rules: IdentityRules) -> Violation | None:
    """The first identity in `request` that `rules` do not allow, if any."""
    for verdict in verdicts(request, rules):
        if not verdict.allowed:
            # JSON-quoted, as InvalidSpec shows values: one line, whatever the value holds.
            message = f"spec.{verdict.field} {json.dumps(verdict.value)}: {verdict.rule}"
            return Violation(Reason.POLICY_DENIED, message)
    return None


def verdicts(request: LeafRequest, rules: IdentityRules) -> Iterator[Verdict]:
    """Every identity of `request`, in spec order, with its verdict."""
    judge = _Judge(request, rules)
    subject, names = request.subject, request.alt_names
    if subject.common_name:
        yield judge.common_name(subject.common_name)
    yield from (judge.dns_name("dnsNames", name) for name in names.dns_names)
    yield from (judge.ip_address("ipAddresses", str(ip)) for ip in names.ip_addresses)
    yield from (judge.uri(uri) for uri in names.uris)
    yield from (judge.email(address) for address in names.email_addresses)
    yield from (judge.organization(o) for o in subject.organizations)
    yield from (judge.unit(u) for u in subject.organizational_units)


class _Judge:
    def __init__(self, request: LeafRequest, rules: IdentityRules) -> None:
        self._request = request
        self._rules = rules
        # Only the policies whose usages and maxDuration admit this certificate grant.
        self._policies = tuple(
            p for p in rules.policies if p.applies_to(request.usage, request.lifetime)
        )

    def common_name(self, common_name: str) -> Verdict:
        request, rules = self._request, self._rules
        if not request.usage.serves:
            return Verdict(
                "commonName",
                common_name,
                True,
                f"a client certificate's Common Name is free; its O is the namespace "
                f"({rules.namespace})",
            )
        # A serving certificate's Common Name that is a host name or an IP
        # address is also written into its SAN (LeafRequest.effective_alt_names),
        # where clients match it: it is judged by the SAN's rules, which
        # allow.commonNames does not bypass.
        if is_dns_name(common_name):
            return self.dns_name("commonName", common_name, _IN_THE_SAN)
        if is_ip_address(common_name):
            return self.ip_address("commonName", common_name, _IN_THE_SAN)
        return self._granted(
            "commonName",
            common_name,
            lambda g: common_name in g.common_names,
            f"a {request.usage.value} certificate's Common Name must be a name of namespace "
            f"{rules.namespace} or one an MtlsPolicy grants (allow.commonNames)",
        )

    def dns_name(self, field: str, text: str, note: str = "") -> Verdict:
        """`text` as written; judged as the SAN holds it, in lower case."""
        rules, name = self._rules, text.lower()
        default = " and ".join(f"*{s}" for s in rules.dns_suffixes)
        if rules.owns_dns_name(name):
            return Verdict(field, text, True, f"the namespace default ({default})")
        return self._granted(
            field,
            text,
            lambda g: any(p.grants(name) for p in g.dns_names),
            f"not a name of namespace {rules.namespace} (the default allows {default}), "
            f"and no MtlsPolicy grants it (allow.dnsNames){note}",
        )

    def ip_address(self, field: str, text: str, note: str = "") -> Verdict:
        address = parse_ip_address(text)
        return self._granted(
            field,
            text,
            lambda g: g.grants_ip(address),
            "IP addresses belong to no namespace, and no MtlsPolicy grants it "
            f"(allow.ipAddresses){note}",
        )

    def uri(self, uri: str) -> Verdict:
        rules = self._rules
        default = f"{rules.spiffe_prefix}<service account>"
        if rules.owns_uri(uri):
            return Verdict("uris", uri, True, f"the namespace default ({default})")
        return self._granted(
            "uris",
            uri,
            lambda g: any(p.grants(uri) for p in g.uris),
            f"not an identity of namespace {rules.namespace} (the default allows {default}), "
            "and no MtlsPolicy grants it (allow.uris)",
        )

    def email(self, address: str) -> Verdict:
        return self._granted(
            "emailAddresses",
            address,
            lambda g: any(p.grants(address) for p in g.email_addresses),
            "e-mail addresses belong to no namespace, and no MtlsPolicy grants it "
            "(allow.emailAddresses)",
        )

    def organization(self, organization: str) -> Verdict:
        return self._refused(
            "subject.organizations",
            organization,
            f"the Organization is set by the operator to the namespace "
            f"(O={self._rules.namespace}); leave subject.organizations empty",
        )

    def unit(self, unit: str) -> Verdict:
        return self._granted(
            "subject.organizationalUnits",
            unit,
            lambda g: unit in g.organizational_units,
            "servers may authorise on it and it belongs to no namespace, and no MtlsPolicy "
            "grants it (allow.organizationalUnits)",
        )

    def _granted(
        self,
        field: str,
        value: str,
        grants: Callable[[Grants], bool],
        why: str = "",
    ) -> Verdict:
        granting = [p.name for p in self._policies if grants(p.grants)]
        if granting:
            return Verdict(field, value, True, f"MtlsPolicy {', '.join(granting)}")
        return self._refused(field, value, why)

    def _refused(self, field: str, value: str, why: str) -> Verdict:
        return Verdict(field, value, False, why + self._policy_note())

    def _policy_note(self) -> str:
        """What the policies of the namespace are, so that a refusal says
        which rules were looked at."""
        rules = self._rules
        if not rules.policies:
            return f"; no MtlsPolicy selects namespace {rules.namespace}"
        notes = []
        for policy in rules.policies:
            if policy in self._policies:
                notes.append(policy.name)
            else:
                usages = "/".join(sorted(u.value for u in policy.usages))
                limit = (
                    f" of at most {format_duration(policy.max_duration)}"
                    if policy.max_duration
                    else ""
                )
                notes.append(f"{policy.name} (grants only {usages} certificates{limit})")
        return f"; MtlsPolicies for namespace {rules.namespace}: {', '.join(notes)}"
