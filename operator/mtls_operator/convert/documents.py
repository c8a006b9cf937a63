"""A stream of parsed YAML documents, converted: issuers first (so that a
certificate finds its issuer wherever it stands in the input), then every
object in the order given. A certificate is converted whole or not at all,
and what is converted parses as the operator's own spec."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from mtls_operator.api.resources import API_VERSION, KIND
from mtls_operator.api.spec import InvalidSpec, parse_spec
from mtls_operator.convert.certificate import SpecMapper
from mtls_operator.convert.issuers import IssuerIndex, issuer_notes, read_issuer
from mtls_operator.convert.model import (
    CERT_MANAGER_API_VERSION,
    CERT_MANAGER_GROUP,
    CERTIFICATE,
    ISSUER_KINDS,
    Conversion,
    Converted,
    Refusal,
    Skipped,
    describe,
)

# Metadata that describes the cert-manager object, not what it asks for.
_DROPPED_ANNOTATION_PREFIXES = ("cert-manager.io/", "kubectl.kubernetes.io/")
# The operator's --min-duration is a deployment setting, unknown here.
_NO_MINIMUM = datetime.timedelta(0)


def convert_documents(documents: Iterable[object]) -> Conversion:
    objects = list(_flatten(documents))
    issuers = IssuerIndex()
    for document in objects:
        if _is_cert_manager(document) and document.get("kind") in ISSUER_KINDS:
            issuers.add(read_issuer(document))
    conversion = Conversion()
    seen: set[tuple[str | None, str]] = set()
    for document in objects:
        _convert_one(document, issuers, seen, conversion)
    return conversion


def _flatten(documents: Iterable[object]) -> Iterator[dict[str, Any]]:
    """Documents, with the items of `kind: List` in their place; empty ones dropped."""
    for document in documents:
        if not isinstance(document, dict):
            continue
        if document.get("kind") == "List" and isinstance(document.get("items"), list):
            yield from _flatten(document["items"])
        else:
            yield document


def _is_cert_manager(document: Mapping[str, Any]) -> bool:
    return str(document.get("apiVersion", "")).startswith(f"{CERT_MANAGER_GROUP}/")


def _convert_one(
    document: dict[str, Any],
    issuers: IssuerIndex,
    seen: set[tuple[str | None, str]],
    conversion: Conversion,
) -> None:
    source = describe(document)
    kind = document.get("kind")
    if not _is_cert_manager(document):
        conversion.skipped.append(Skipped(source, "not a cert-manager object; left out"))
    elif document.get("apiVersion") != CERT_MANAGER_API_VERSION:
        conversion.refusals.append(
            Refusal(
                source,
                "apiVersion",
                document.get("apiVersion"),
                f"only {CERT_MANAGER_API_VERSION} is read; convert it first "
                "(cmctl convert --output-version cert-manager.io/v1)",
            )
        )
    elif kind in ISSUER_KINDS:
        notes, refusal = issuer_notes(read_issuer(document))
        if refusal is not None:
            conversion.refusals.append(refusal)
        else:
            conversion.converted.append(Converted(source, None, tuple(notes)))
    elif kind == CERTIFICATE:
        _convert_certificate(source, document, issuers, seen, conversion)
    else:
        conversion.refusals.append(
            Refusal(
                source,
                "kind",
                kind,
                "only Certificate, Issuer and ClusterIssuer are converted",
            )
        )


def _convert_certificate(
    source: str,
    document: dict[str, Any],
    issuers: IssuerIndex,
    seen: set[tuple[str | None, str]],
    conversion: Conversion,
) -> None:
    metadata = document.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    spec = document.get("spec")
    refusals = []
    if not name:
        refusals.append(Refusal(source, "metadata.name", name, "a Certificate needs a name"))
    elif (namespace, name) in seen:
        refusals.append(
            Refusal(
                source,
                "metadata.name",
                name,
                "a second Certificate of that name in the input; the later one would replace "
                "the first",
            )
        )
    seen.add((namespace, str(name)))
    if not isinstance(spec, Mapping):
        conversion.refusals += [*refusals, Refusal(source, "spec", spec, "must be an object")]
        return
    mapped = SpecMapper(source).map(spec)
    signer = issuers.signer(source, namespace, spec.get("issuerRef"))
    spec_refusals = mapped.refusals + ([signer.refusal] if signer.refusal else [])
    refusals += spec_refusals
    out_spec = mapped.spec
    if signer.ca_secret_name:
        out_spec["caSecretName"] = signer.ca_secret_name
    if not spec_refusals:
        try:
            parse_spec(out_spec, _NO_MINIMUM)
        except InvalidSpec as err:
            # Converted names are the operator's names, so its message fits as it is.
            refusals.append(
                Refusal(source, f"spec.{err.field_path}", None, str(err), detail=str(err))
            )
    if refusals:
        conversion.refusals += refusals
        return
    body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": _metadata(metadata)}
    body["spec"] = _ordered(out_spec)
    conversion.converted.append(Converted(source, body, (*signer.notes, *mapped.notes)))


def _metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {"name": metadata["name"]}
    if metadata.get("namespace"):
        kept["namespace"] = metadata["namespace"]
    if metadata.get("labels"):
        kept["labels"] = dict(metadata["labels"])
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if not k.startswith(_DROPPED_ANNOTATION_PREFIXES)
    }
    if annotations:
        kept["annotations"] = annotations
    return kept


_ORDER = (
    "secretName",
    "usage",
    "commonName",
    "dnsNames",
    "ipAddresses",
    "uris",
    "emailAddresses",
    "subject",
    "duration",
    "renewBefore",
    "renewBeforePercentage",
    "privateKey",
    "caSecretName",
    "secretTemplate",
    "additionalOutputFormats",
    "keystores",
)


def _ordered(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The fields in the order of the operator's documentation, to read
    easily; a field the order does not list comes last, never dropped."""
    return {**{k: spec[k] for k in _ORDER if k in spec}, **spec}
