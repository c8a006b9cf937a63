"""Errors of the PKI core. Messages are one line and never hold key material."""

from __future__ import annotations

import enum


class PKIError(ValueError):
    """Something about keys or certificates that the user has to fix."""


class KeyLoadError(PKIError):
    """A private key could not be read (not PEM, encrypted, wrong passphrase)."""


class CertificateLoadError(PKIError):
    """Certificate data could not be read as PEM or DER X.509."""


class CRLLoadError(PKIError):
    """CRL data could not be read as a PEM or DER CRL of the kind this project signs."""


class CAProblem(enum.Enum):
    """Why a CA cannot sign, so that callers can report it precisely."""

    NOT_PEM = "NotPEM"
    NOT_A_CA = "NotACA"
    KEY_MISMATCH = "KeyMismatch"
    EXPIRED = "Expired"
    NOT_YET_VALID = "NotYetValid"
    KEY_UNREADABLE = "KeyUnreadable"
    INCOMPLETE = "Incomplete"
    TOO_LARGE = "TooLarge"


class CAError(PKIError):
    """A CA that is unusable for signing; `problem` says which check failed."""

    def __init__(self, problem: CAProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
