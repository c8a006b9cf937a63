"""Errors as one line, for a status message or a log line."""

from __future__ import annotations

MAX_MESSAGE = 500


def one_line(err: BaseException, *, for_users: tuple[type[BaseException], ...] = ()) -> str:
    """The first line of `err`. Errors of the `for_users` kinds are written
    for users and shown as they are; any other is named by its type, since
    its text alone rarely says what went wrong."""
    text = str(err).splitlines()[0] if str(err) else ""
    shown = text if isinstance(err, for_users) else f"{type(err).__name__}: {text}"
    return shown[:MAX_MESSAGE]


# What to do when the API server refuses a call for good, by status.
FIX_FOR_STATUS = {
    401: "the API server refused the operator's credentials: check its kubeconfig or token",
    403: "bind the ClusterRoles of deploy/base/rbac.yaml to the operator's ServiceAccount",
    404: "install the CRDs first (kubectl apply -k crds/)",
}
