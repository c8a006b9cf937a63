"""cert-manager Issuers and ClusterIssuers: which CA a converted
certificate signs with, and what to tell the user about each issuer.

The operator signs with CA Secrets only: a `ca` issuer's Secret becomes
`caSecretName`, a `selfSigned` one has no counterpart (the cluster CA, or a
CA Secret, signs instead), and ACME, Vault, Venafi or external issuers
cannot be carried over."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mtls_operator.convert.model import (
    CERT_MANAGER_GROUP,
    ISSUER,
    ISSUER_KINDS,
    Refusal,
)

CA, SELF_SIGNED = "ca", "selfSigned"
ISSUER_TYPES = (CA, SELF_SIGNED, "acme", "vault", "venafi")
# Where cert-manager keeps the Secrets of ClusterIssuers (its
# --cluster-resource-namespace, the namespace it runs in by default).
CLUSTER_RESOURCE_NAMESPACE = "cert-manager"
_TYPE_NAMES = {"acme": "an ACME", "vault": "a Vault", "venafi": "a Venafi"}


@dataclass(frozen=True)
class Issuer:
    kind: str
    namespace: str | None  # None for a ClusterIssuer
    name: str
    type: str | None  # one of ISSUER_TYPES, or None when none is set
    ca_secret_name: str | None = None

    @property
    def title(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def read_issuer(document: Mapping[str, Any]) -> Issuer:
    metadata = document.get("metadata") or {}
    kind = str(document.get("kind"))
    spec = document.get("spec") or {}
    kinds = [t for t in ISSUER_TYPES if isinstance(spec, Mapping) and t in spec]
    ca = spec.get(CA) if kinds == [CA] else None
    secret = ca.get("secretName") if isinstance(ca, Mapping) else None
    return Issuer(
        kind=kind,
        namespace=metadata.get("namespace") if kind == ISSUER else None,
        name=str(metadata.get("name") or ""),
        type=kinds[0] if len(kinds) == 1 else None,
        ca_secret_name=secret if isinstance(secret, str) and secret else None,
    )


def issuer_notes(issuer: Issuer) -> tuple[list[str], Refusal | None]:
    """What to tell about an issuer itself; a refusal for one that cannot
    be carried over."""
    if issuer.type == CA and issuer.ca_secret_name:
        return [ca_instructions(issuer)], None
    if issuer.type == SELF_SIGNED:
        return [
            f"{issuer.title} is selfSigned: the operator has no self-signed mode. "
            "Certificates that used it are signed by the cluster CA instead "
            "(--cluster-ca-secret), or by a CA Secret of their namespace if you set "
            "caSecretName."
        ], None
    field = f"spec.{issuer.type}" if issuer.type else "spec"
    return [], Refusal(
        issuer.title,
        field,
        "{...}",
        "the operator signs only with CA Secrets (ca issuers), "
        f"not as {_TYPE_NAMES.get(issuer.type or '', 'an unknown')} issuer",
    )


def ca_instructions(issuer: Issuer) -> str:
    secret = issuer.ca_secret_name
    if issuer.kind == ISSUER:
        return (
            f"{issuer.title} is a ca issuer: its Secret {secret} (tls.crt and tls.key) is a "
            f"CA Secret the operator reads as it is. Certificates that used it get "
            f"caSecretName: {secret}; keep the Secret in namespace {issuer.namespace}."
        )
    return (
        f"{issuer.title} is a ca issuer whose Secret {secret} lives in cert-manager's "
        f"cluster resource namespace ({CLUSTER_RESOURCE_NAMESPACE} unless "
        "--cluster-resource-namespace says otherwise). caSecretName names a Secret in the "
        f"certificate's own namespace, so copy it into each namespace that uses it: "
        f"kubectl get secret {secret} -n {CLUSTER_RESOURCE_NAMESPACE} -o json | jq "
        "'{apiVersion, kind, type, data, metadata: {name: .metadata.name}}' | "
        "kubectl apply -n NAMESPACE -f - . "
        f"Or make it the operator's cluster CA (--cluster-ca-secret "
        f"{CLUSTER_RESOURCE_NAMESPACE}/{secret}) and remove caSecretName: then the identity "
        "policy applies to these certificates."
    )


@dataclass(frozen=True)
class Signer:
    """How a converted certificate is signed: a CA Secret or the cluster CA."""

    ca_secret_name: str | None
    notes: tuple[str, ...] = ()
    refusal: Refusal | None = None


class IssuerIndex:
    """The issuers given in the input, to resolve certificates' issuerRefs."""

    def __init__(self) -> None:
        self._issuers: dict[tuple[str, str | None, str], Issuer] = {}

    def add(self, issuer: Issuer) -> None:
        self._issuers[(issuer.kind, issuer.namespace, issuer.name)] = issuer

    def signer(self, source: str, namespace: str | None, reference: object) -> Signer:
        """The signer for a certificate in `namespace` with this issuerRef."""
        if reference is None:
            return Signer(None, ("no issuerRef: the cluster CA signs it",))
        refusal = _reference_refusal(source, reference)
        if refusal is not None or not isinstance(reference, Mapping):
            return Signer(None, refusal=refusal)
        kind = reference.get("kind") or ISSUER
        name = str(reference.get("name") or "")
        issuer = self._issuers.get((kind, namespace if kind == ISSUER else None, name))
        if issuer is None:
            return Signer(None, (_not_given(kind, name),))
        if issuer.type == CA and issuer.ca_secret_name:
            return Signer(issuer.ca_secret_name, (f"signed by {issuer.title}'s CA Secret",))
        if issuer.type == SELF_SIGNED:
            return Signer(
                None,
                (
                    f"{issuer.title} is selfSigned, which the operator has no mode for: "
                    "the cluster CA signs it instead (or set caSecretName to a CA Secret)",
                ),
            )
        return Signer(
            None,
            refusal=Refusal(
                source,
                "spec.issuerRef",
                dict(reference),
                f"{issuer.title} is {_TYPE_NAMES.get(issuer.type or '', 'an unknown')} issuer; "
                "the operator signs only with CA Secrets",
            ),
        )


def _reference_refusal(source: str, reference: object) -> Refusal | None:
    """An issuerRef that cannot name a cert-manager issuer at all."""
    if not isinstance(reference, Mapping):
        return Refusal(source, "spec.issuerRef", reference, "must be an object")
    group = reference.get("group") or CERT_MANAGER_GROUP
    if group != CERT_MANAGER_GROUP:
        return Refusal(
            source,
            "spec.issuerRef.group",
            group,
            "an external issuer; the operator signs only with its own CA Secrets",
        )
    kind = reference.get("kind") or ISSUER
    if kind not in ISSUER_KINDS:
        return Refusal(source, "spec.issuerRef.kind", kind, "must be Issuer or ClusterIssuer")
    return None


def _not_given(kind: str, name: str) -> str:
    return (
        f"issuerRef {kind} {name} was not in the input: the cluster CA signs it. If {name} "
        "is a ca issuer, convert it together with its Issuer (-f issuer.yaml) or set "
        "caSecretName to its CA Secret (in this namespace)."
    )
