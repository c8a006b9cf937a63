"""One cert-manager Certificate's spec, field by field, as an MtlsCertificate
spec. Each field of cert-manager.io/v1 is in exactly one table below:
copied, mapped, dropped (no meaning here) or refused (with the reason)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mtls_operator.api.usages import UnsupportedUsages, usage_from_usages
from mtls_operator.convert.model import HIDDEN, Refusal

# The same name and meaning in both APIs.
COPIED = (
    "secretName",
    "commonName",
    "dnsNames",
    "ipAddresses",
    "uris",
    "emailAddresses",
    "duration",
    "renewBefore",
    "renewBeforePercentage",
)
# Fields that steer cert-manager's own machinery and mean nothing here.
DROPPED = {
    "revisionHistoryLimit": "the operator keeps no CertificateRequest history",
    "encodeUsagesInRequest": "the operator signs without a CertificateRequest",
}
REFUSED = {
    "literalSubject": "the operator builds the subject from commonName and subject; "
    "write the attributes there",
    "otherNames": "the operator issues no otherName subject alternative names",
    "nameConstraints": "name constraints belong in CA certificates; "
    "the operator issues leaf certificates only",
    "signatureAlgorithm": "the operator chooses the signature algorithm from the CA's key",
}
SUBJECT_COPIED = ("organizations", "organizationalUnits", "countries", "provinces", "localities")
SUBJECT_REFUSED = dict.fromkeys(
    ("streetAddresses", "postalCodes", "serialNumber"), "the operator does not set this attribute"
)
PRIVATE_KEY_COPIED = ("algorithm", "size", "encoding", "rotationPolicy")
OUTPUT_FORMATS = ("CombinedPEM", "DER")
# PKCS#12 protection: the operator always writes what cert-manager calls Modern2023
# (AES-256-CBC, PBKDF2 and a SHA-256 MAC); the legacy RC2/3DES forms are not offered.
PKCS12_PROFILES = ("Modern2023",)
# What cert-manager does when a Certificate does not say, where the operator's
# default differs; written out so that the converted key is the same kind.
CERT_MANAGER_KEY_DEFAULTS = {"algorithm": "RSA", "encoding": "PKCS1"}


@dataclass
class MappedSpec:
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


class SpecMapper:
    """Maps one spec; `source` names the Certificate in refusals."""

    def __init__(self, source: str) -> None:
        self._source = source
        self.result = MappedSpec()
        self._mapped: dict[str, Callable[[Any], None]] = {
            "usages": self._usages,
            "isCA": self._is_ca,
            "subject": self._subject,
            "privateKey": self._private_key,
            "secretTemplate": self._secret_template,
            "additionalOutputFormats": self._output_formats,
            "keystores": self._keystores,
        }

    def map(self, spec: Mapping[str, Any]) -> MappedSpec:
        for name in COPIED:
            if spec.get(name) is not None:
                self.result.spec[name] = spec[name]
        if spec.get("usages") is None:
            self._no_usages()
        for name, value in spec.items():
            if name in COPIED or name == "issuerRef" or value is None:
                continue
            if name in self._mapped:
                self._mapped[name](value)
            elif name in DROPPED:
                self.result.notes.append(f"spec.{name} dropped: {DROPPED[name]}")
            else:
                reason = REFUSED.get(name, "is not a field of cert-manager.io/v1 Certificate")
                self.refuse(f"spec.{name}", value, reason)
        if "privateKey" not in spec:
            self._private_key({})
        return self.result

    def refuse(self, path: str, value: object, reason: str) -> None:
        self.result.refusals.append(Refusal(self._source, path, value, reason))

    def _object(self, path: str, value: object) -> Mapping[str, Any] | None:
        """`value` if it is an object; anything else is refused (None)."""
        if isinstance(value, Mapping):
            return value
        self.refuse(path, value, "must be an object")
        return None

    def _fields(
        self,
        path: str,
        given: object,
        copied: tuple[str, ...],
        kind: str,
        *,
        refused: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """The `copied` fields set in the object `given` (None: not an
        object); the `refused` ones and any other are refused."""
        fields = self._object(path, given)
        if fields is None:
            return None
        for key, value in fields.items():
            if refused and key in refused:
                self.refuse(f"{path}.{key}", value, refused[key])
            elif key not in copied:
                self.refuse(f"{path}.{key}", value, f"is not a cert-manager {kind} field")
        return {k: fields[k] for k in copied if fields.get(k) is not None}

    def _no_usages(self) -> None:
        # cert-manager then sets no extended key usage, which TLS stacks accept on
        # either side of a connection; both keeps every such use working.
        self.result.spec["usage"] = "both"
        self.result.notes.append(
            "no usages: cert-manager's certificate had no extended key usage, which "
            "either side of a TLS connection accepts; usage: both keeps that working "
            "(narrow it to server or client if you know)"
        )

    def _usages(self, usages: object) -> None:
        if not isinstance(usages, list):
            self.refuse("spec.usages", usages, "must be a list")
            return
        try:
            self.result.spec["usage"] = usage_from_usages(usages).value
        except UnsupportedUsages as err:
            where = "spec.usages" if err.index is None else f"spec.usages[{err.index}]"
            self.refuse(where, err.value, str(err))

    def _is_ca(self, is_ca: object) -> None:
        if is_ca is not False:
            self.refuse(
                "spec.isCA",
                is_ca,
                "the operator issues leaf certificates only; keep this CA where it is, "
                "and give it to the operator as a CA Secret (caSecretName)",
            )

    def _subject(self, given: object) -> None:
        copied = self._fields(
            "spec.subject", given, SUBJECT_COPIED, "subject", refused=SUBJECT_REFUSED
        )
        if copied:
            self.result.spec["subject"] = copied

    def _private_key(self, given: object) -> None:
        mapped = self._fields("spec.privateKey", given, PRIVATE_KEY_COPIED, "privateKey")
        if mapped is None:
            return
        implied = {k: v for k, v in CERT_MANAGER_KEY_DEFAULTS.items() if k not in mapped}
        if implied:
            shown = ", ".join(f"{k} {v}" for k, v in implied.items())
            self.result.notes.append(
                f"privateKey {shown}: cert-manager's default, written out (the operator's "
                "own is ECDSA P-256 in PKCS8)"
            )
        self.result.spec["privateKey"] = {**implied, **mapped}

    def _secret_template(self, given: object) -> None:
        template = self._object("spec.secretTemplate", given)
        if template is None:
            return
        for key, value in template.items():
            if key not in ("labels", "annotations"):
                self.refuse(f"spec.secretTemplate.{key}", value, "is not a secretTemplate field")
        kept = {k: template[k] for k in ("labels", "annotations") if template.get(k)}
        if kept:
            self.result.spec["secretTemplate"] = kept

    def _output_formats(self, formats: object) -> None:
        if not isinstance(formats, list):
            self.refuse("spec.additionalOutputFormats", formats, "must be a list")
            return
        for index, entry in enumerate(formats):
            kind = entry.get("type") if isinstance(entry, Mapping) else entry
            if kind not in OUTPUT_FORMATS:
                self.refuse(
                    f"spec.additionalOutputFormats[{index}].type",
                    kind,
                    f"must be {' or '.join(OUTPUT_FORMATS)}",
                )
        self.result.spec["additionalOutputFormats"] = [
            {"type": e.get("type")} for e in formats if isinstance(e, Mapping)
        ]

    def _keystores(self, given: object) -> None:
        keystores = self._object("spec.keystores", given)
        if keystores is None:
            return
        for kind, keystore in keystores.items():
            if kind == "pkcs12":
                self._pkcs12(keystore)
            elif kind == "jks":
                self._jks(keystore)
            else:
                self.refuse(f"spec.keystores.{kind}", keystore, "is not a keystore type")

    def _pkcs12(self, given: object) -> None:
        pkcs12 = self._object("spec.keystores.pkcs12", given)
        if pkcs12 is None:
            return
        if pkcs12.get("create") is False:
            self.result.notes.append("spec.keystores.pkcs12 dropped: create is false")
            return
        for key, value in pkcs12.items():
            if key == "password":
                self.refuse(
                    "spec.keystores.pkcs12.password",
                    HIDDEN,
                    "the operator reads keystore passwords from a Secret only: put it in one "
                    "and name it in passwordSecretRef",
                )
            elif key == "profile" and value not in PKCS12_PROFILES:
                self.refuse(
                    "spec.keystores.pkcs12.profile",
                    value,
                    "the operator writes only Modern2023 keystores (AES-256-CBC, SHA-256 MAC)",
                )
            elif key not in ("create", "passwordSecretRef", "profile"):
                self.refuse(f"spec.keystores.pkcs12.{key}", value, "is not a pkcs12 field")
        if pkcs12.get("profile") in PKCS12_PROFILES:
            self.result.notes.append(
                "spec.keystores.pkcs12.profile dropped: Modern2023 is what the operator writes"
            )
        if "passwordSecretRef" not in pkcs12 and "password" not in pkcs12:
            self.refuse("spec.keystores.pkcs12.passwordSecretRef", None, "is required")
        if "passwordSecretRef" in pkcs12:
            self.result.spec["keystores"] = {
                "pkcs12": {"passwordSecretRef": pkcs12["passwordSecretRef"]}
            }

    def _jks(self, jks: object) -> None:
        if isinstance(jks, Mapping) and jks.get("create") is False:
            self.result.notes.append("spec.keystores.jks dropped: create is false")
            return
        listed = (
            {k: v for k, v in jks.items() if k != "password"} if isinstance(jks, Mapping) else jks
        )
        self.refuse(
            "spec.keystores.jks",
            listed,
            "the operator writes no JKS keystores; Java 9 and later read PKCS#12: "
            "use keystores.pkcs12",
        )
