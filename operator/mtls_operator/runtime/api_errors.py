"""The API server's refusals, as the client raises them."""

from __future__ import annotations

import json


class ApiError(Exception):
    """A refused API request, with the status and the server's reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        # Status 0: no answer from the API server (no credentials, unreachable).
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """A failed precondition (resourceVersion) or an existing name."""
        return self.status == 409


class Gone(ApiError):
    """The requested resourceVersion is too old; the caller must re-list."""


def api_error(status: int, payload: bytes) -> ApiError:
    """The error of a refusal, from its status and its body (a Status object,
    or whatever a proxy on the way answered)."""
    try:
        body = json.loads(payload)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or "Error")
    message = str(body.get("message") or payload[:200].decode(errors="replace"))
    error_type = Gone if status == 410 else ApiError
    return error_type(status, reason, message)
