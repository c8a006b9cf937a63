"""The MtlsCertificate spec, parsed into a typed, validated value.

The CRD schema rejects what a schema can express; this module checks the
rest (name syntax, durations, key combinations) and names the field and
the bad value in a one-line error.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from mtls_operator.api.durations import format_duration
from mtls_operator.api.errors import FieldError
from mtls_operator.api.fields import Fields
from mtls_operator.api.outputs import OutputFormat, expected_data_keys
from mtls_operator.api.usages import UnsupportedUsages, usage_from_usages
from mtls_operator.pki import (
    DistinguishedName,
    KeyAlgorithm,
    KeyEncoding,
    KeySpec,
    LeafRequest,
    SubjectAltNames,
    Usage,
    names,
)

DEFAULT_DURATION = datetime.timedelta(hours=2160)
MAX_COMMON_NAME = 64
_SUBJECT_LIMITS = {  # RFC 5280 upper bounds
    "organizations": 64,
    "organizationalUnits": 64,
    "provinces": 128,
    "localities": 128,
}
# Servers authorise on the Organizational Unit as on the Common Name.
_SUBJECT_PARSERS = {
    "organizations": names.parse_subject_text,
    "organizationalUnits": names.parse_subject_identity,
    "provinces": names.parse_subject_text,
    "localities": names.parse_subject_text,
}
_COUNTRY_LENGTH = 2
# The API server takes 256 KiB of annotations per object (keys and values);
# the operator's own take well under 4 KiB.
MAX_TEMPLATE_ANNOTATIONS = 256 * 1024 - 4 * 1024
_T = TypeVar("_T")


class InvalidSpec(FieldError):
    """A spec the operator cannot issue from; the message names the field."""


FIELDS = Fields(InvalidSpec)


class RotationPolicy(enum.Enum):
    ALWAYS = "Always"
    NEVER = "Never"


DEFAULT_KEY = KeySpec()


@dataclass(frozen=True)
class PrivateKeyPolicy:
    key: KeySpec = DEFAULT_KEY
    encoding: KeyEncoding = KeyEncoding.PKCS8
    rotation: RotationPolicy = RotationPolicy.ALWAYS


DEFAULT_PRIVATE_KEY_POLICY = PrivateKeyPolicy()


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class CertificateSpec:
    secret_name: str
    request: LeafRequest
    private_key: PrivateKeyPolicy = DEFAULT_PRIVATE_KEY_POLICY
    renew_before: datetime.timedelta | None = None
    renew_before_percentage: int | None = None
    ca_secret_name: str | None = None
    secret_labels: tuple[tuple[str, str], ...] = ()
    secret_annotations: tuple[tuple[str, str], ...] = ()
    retain_secret: bool = False
    output_formats: frozenset[OutputFormat] = frozenset()
    pkcs12_password: SecretKeyRef | None = None

    @property
    def data_keys(self) -> frozenset[str]:
        """The data keys the Secret must hold, no more and no fewer."""
        return expected_data_keys(self.output_formats, self.pkcs12_password is not None)

    def issuance_hash(self) -> str:
        """A digest of everything that goes into the certificate and key, so
        that a change of any of it (and nothing else) means re-issuance."""
        return self._issuance_hash

    @cached_property
    def _issuance_hash(self) -> str:
        # Computed once per parsed spec (once per generation), not at every look.
        request = self.request
        material = {
            "usage": request.usage.value,
            "subject": request.subject.to_x509().rfc4514_string(),
            # Sets: reordering names in the spec is not a change.
            "dns": sorted(request.alt_names.dns_names),
            "ip": sorted(str(ip) for ip in request.alt_names.ip_addresses),
            "uri": sorted(request.alt_names.uris),
            "email": sorted(request.alt_names.email_addresses),
            "duration": format_duration(request.lifetime),
            "key": str(self.private_key.key),
            "encoding": self.private_key.encoding.value,
        }
        encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
        return "v1:" + hashlib.sha256(encoded).hexdigest()[:32]


def parse_spec(spec: Mapping[str, Any], min_duration: datetime.timedelta) -> CertificateSpec:
    """Validate and type a `.spec`; raises InvalidSpec on the first problem."""
    secret_name = FIELDS.string(spec, "secretName", required=True)
    usage = _usage(spec)
    request = _request(spec, usage, min_duration)
    renew_before, percentage = _renewal(spec, request.lifetime)
    labels, annotations = _secret_template(FIELDS.section(spec, "secretTemplate"))
    deletion = spec.get("secretDeletionPolicy") or "Delete"
    if deletion not in ("Delete", "Retain"):
        raise InvalidSpec("secretDeletionPolicy", deletion, "must be Delete or Retain")
    ca_secret_name = FIELDS.string(spec, "caSecretName") or None
    if ca_secret_name is not None:
        FIELDS.object_name("caSecretName", ca_secret_name)
    FIELDS.object_name("secretName", secret_name)

    return CertificateSpec(
        secret_name=secret_name,
        request=request,
        private_key=_private_key(FIELDS.section(spec, "privateKey")),
        renew_before=renew_before,
        renew_before_percentage=percentage,
        ca_secret_name=ca_secret_name,
        secret_labels=labels,
        secret_annotations=annotations,
        retain_secret=deletion == "Retain",
        output_formats=_output_formats(spec.get("additionalOutputFormats") or []),
        pkcs12_password=_pkcs12(FIELDS.section(spec, "keystores")),
    )


def _usage(spec: Mapping[str, Any]) -> Usage:
    """`usage`, or cert-manager's `usages` list meaning the same (not both)."""
    if spec.get("usages") is None:
        usage_text = FIELDS.string(spec, "usage", required=True)
        try:
            return Usage(usage_text)
        except ValueError:
            raise InvalidSpec("usage", usage_text, "must be server, client or both") from None
    if spec.get("usage") is not None:
        raise InvalidSpec("usages", spec["usages"], "set usage or usages, not both")
    usages = spec["usages"]
    if not isinstance(usages, list):
        raise InvalidSpec("usages", usages, "must be a list")
    try:
        return usage_from_usages(usages)
    except UnsupportedUsages as err:
        where = "usages" if err.index is None else f"usages[{err.index}]"
        raise InvalidSpec(where, err.value, str(err)) from None


def _request(
    spec: Mapping[str, Any], usage: Usage, min_duration: datetime.timedelta
) -> LeafRequest:
    """What to certify: the names, the subject and the lifetime."""
    common_name = FIELDS.string(spec, "commonName") or None
    if common_name is not None and len(common_name) > MAX_COMMON_NAME:
        raise InvalidSpec("commonName", common_name, f"is longer than {MAX_COMMON_NAME} characters")
    if common_name is not None:
        FIELDS.parsed("commonName", common_name, names.parse_subject_identity)
    alt_names = SubjectAltNames(
        dns_names=_unique(FIELDS.each(spec, "dnsNames", names.parse_dns_name)),
        ip_addresses=_unique(FIELDS.each(spec, "ipAddresses", names.parse_ip_address)),
        uris=_unique(FIELDS.each(spec, "uris", names.parse_uri)),
        email_addresses=_unique(FIELDS.each(spec, "emailAddresses", names.parse_email_address)),
    )
    if not common_name and alt_names.is_empty():
        raise InvalidSpec(
            "commonName",
            "",
            "give at least one of commonName, dnsNames, ipAddresses, uris, emailAddresses",
        )
    subject = _subject(FIELDS.section(spec, "subject"), common_name)
    duration = FIELDS.duration(spec, "duration") or DEFAULT_DURATION
    if duration < min_duration:
        raise InvalidSpec(
            "duration",
            spec.get("duration"),
            f"is shorter than the minimum {format_duration(min_duration)}",
        )
    return LeafRequest(usage, subject, alt_names, duration)


def _renewal(
    spec: Mapping[str, Any], duration: datetime.timedelta
) -> tuple[datetime.timedelta | None, int | None]:
    """renewBefore or renewBeforePercentage (at most one of them)."""
    renew_before = FIELDS.duration(spec, "renewBefore")
    percentage = spec.get("renewBeforePercentage")
    if renew_before is not None and percentage is not None:
        raise InvalidSpec(
            "renewBefore",
            spec.get("renewBefore"),
            "set renewBefore or renewBeforePercentage, not both",
        )
    if renew_before is not None and renew_before >= duration:
        raise InvalidSpec(
            "renewBefore",
            spec.get("renewBefore"),
            f"must be shorter than the duration ({format_duration(duration)})",
        )
    if renew_before is not None and renew_before <= datetime.timedelta(0):
        raise InvalidSpec("renewBefore", spec.get("renewBefore"), "must be positive")
    if percentage is not None and (
        not isinstance(percentage, int) or isinstance(percentage, bool) or not 1 <= percentage <= 99
    ):
        raise InvalidSpec(
            "renewBeforePercentage", percentage, "must be a whole number from 1 to 99"
        )
    return renew_before, percentage


def _unique(values: Sequence[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(values))


def _subject(subject: Mapping[str, Any], common_name: str | None) -> DistinguishedName:
    fields: dict[str, tuple[str, ...]] = {}
    for key, limit in _SUBJECT_LIMITS.items():
        values = FIELDS.strings(subject, key, f"subject.{key}")
        for index, value in enumerate(values):
            if not value or len(value) > limit:
                raise InvalidSpec(
                    f"subject.{key}[{index}]", value, f"must be 1 to {limit} characters"
                )
            FIELDS.parsed(f"subject.{key}[{index}]", value, _SUBJECT_PARSERS[key])
        fields[key] = tuple(values)
    countries = FIELDS.strings(subject, "countries", "subject.countries")
    for index, country in enumerate(countries):
        if len(country) != _COUNTRY_LENGTH or not country.isascii() or not country.isalpha():
            raise InvalidSpec(
                f"subject.countries[{index}]", country, "must be a two-letter ISO 3166 code"
            )
    return DistinguishedName(
        common_name=common_name,
        organizations=fields["organizations"],
        organizational_units=fields["organizationalUnits"],
        countries=tuple(c.upper() for c in countries),
        provinces=fields["provinces"],
        localities=fields["localities"],
    )


def _private_key(private_key: Mapping[str, Any]) -> PrivateKeyPolicy:
    algorithm_text = FIELDS.string(private_key, "algorithm", path="privateKey.algorithm") or "ECDSA"
    try:
        algorithm = KeyAlgorithm.parse(algorithm_text)
    except ValueError:
        raise InvalidSpec(
            "privateKey.algorithm", algorithm_text, "must be ECDSA, RSA or Ed25519"
        ) from None
    size = private_key.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        raise InvalidSpec("privateKey.size", size, "must be a number")
    try:
        key = KeySpec.of(algorithm, size)
    except ValueError as err:
        raise InvalidSpec("privateKey.size", size, str(err)) from None
    encoding_text = FIELDS.string(private_key, "encoding", path="privateKey.encoding") or "PKCS8"
    try:
        encoding = KeyEncoding.parse(encoding_text)
    except ValueError:
        raise InvalidSpec("privateKey.encoding", encoding_text, "must be PKCS8 or PKCS1") from None
    if encoding is KeyEncoding.PKCS1 and algorithm is KeyAlgorithm.ED25519:
        raise InvalidSpec("privateKey.encoding", encoding_text, "Ed25519 keys can only be PKCS8")
    rotation_text = (
        FIELDS.string(private_key, "rotationPolicy", path="privateKey.rotationPolicy") or "Always"
    )
    try:
        rotation = RotationPolicy(rotation_text)
    except ValueError:
        raise InvalidSpec(
            "privateKey.rotationPolicy", rotation_text, "must be Always or Never"
        ) from None
    return PrivateKeyPolicy(key, encoding, rotation)


def _secret_template(
    template: Mapping[str, Any],
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    result = []
    for part in ("labels", "annotations"):
        values = FIELDS.string_map(template, part, f"secretTemplate.{part}")
        for key, value in values.items():
            if key.startswith(("mtls.dev/", "app.kubernetes.io/managed-by")):
                raise InvalidSpec(
                    f"secretTemplate.{part}.{key}", value, "is reserved for the operator"
                )
        result.append(tuple(sorted(values.items())))
    size = sum(len(k.encode()) + len(v.encode()) for k, v in result[1])
    if size > MAX_TEMPLATE_ANNOTATIONS:
        raise InvalidSpec(
            "secretTemplate.annotations",
            f"{size} bytes",
            f"is more than the {MAX_TEMPLATE_ANNOTATIONS} bytes a Secret takes besides the "
            "operator's own annotations",
        )
    return result[0], result[1]


def _output_formats(formats: Any) -> frozenset[OutputFormat]:
    if not isinstance(formats, list):
        raise InvalidSpec("additionalOutputFormats", formats, "must be a list")
    parsed = set()
    for index, entry in enumerate(formats):
        kind = entry.get("type") if isinstance(entry, Mapping) else entry
        try:
            parsed.add(OutputFormat(kind))
        except ValueError:
            raise InvalidSpec(
                f"additionalOutputFormats[{index}]",
                kind,
                f"must be {' or '.join(f.value for f in OutputFormat)}",
            ) from None
    return frozenset(parsed)


def _pkcs12(keystores: Mapping[str, Any]) -> SecretKeyRef | None:
    pkcs12 = keystores.get("pkcs12")
    if pkcs12 is None:
        return None
    if not isinstance(pkcs12, Mapping):
        raise InvalidSpec("keystores.pkcs12", pkcs12, "must be an object")
    create = pkcs12.get("create", True)
    if not isinstance(create, bool):
        raise InvalidSpec("keystores.pkcs12.create", create, "must be true or false")
    if not create:
        # cert-manager's switch: a keystore section that is kept but turned off.
        return None
    ref = pkcs12.get("passwordSecretRef")
    if not isinstance(ref, Mapping):
        raise InvalidSpec("keystores.pkcs12.passwordSecretRef", ref, "is required")
    name = FIELDS.string(ref, "name", required=True, path="keystores.pkcs12.passwordSecretRef.name")
    FIELDS.object_name("keystores.pkcs12.passwordSecretRef.name", name)
    key = FIELDS.string(ref, "key", path="keystores.pkcs12.passwordSecretRef.key") or "password"
    return SecretKeyRef(name, key)
