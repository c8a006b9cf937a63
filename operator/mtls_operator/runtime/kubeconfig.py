"""The kubeconfig as kubectl reads it: which file and context --kubeconfig
and --context pick, and the namespace commands default to."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtls_operator.runtime.api_errors import ApiError

# The reason of the ApiError when there is nothing to log in with.
NO_CREDENTIALS = "NoCredentials"


@dataclass(frozen=True)
class KubeconfigChoice:
    """What kubectl's --kubeconfig and --context pick; both None: the
    in-cluster ServiceAccount, else $KUBECONFIG or ~/.kube/config and its
    current context."""

    path: str | None = None
    context: str | None = None

    @property
    def explicit(self) -> bool:
        return self.path is not None or self.context is not None

    def config_file(self) -> str | None:
        return self.path or os.environ.get("KUBECONFIG") or None


def current_namespace(choice: KubeconfigChoice | None = None) -> str:
    """The namespace commands default to, as kubectl picks it: the
    kubeconfig context's namespace, else `default`."""
    choice = choice or KubeconfigChoice()
    check_context(choice)
    contexts, current = _contexts(choice)
    context = contexts.get(choice.context or current or "", {})
    namespace = (context.get("context") or {}).get("namespace")
    return str(namespace) if namespace else "default"


def check_context(choice: KubeconfigChoice) -> None:
    """A --context the kubeconfig lacks is named, with the ones it has."""
    if choice.context is None:
        return
    known, _ = _contexts(choice)
    if choice.context not in known:
        where = choice.config_file() or "~/.kube/config"
        listed = ", ".join(sorted(known)) or "none"
        raise ApiError(
            0,
            NO_CREDENTIALS,
            f"--context {choice.context}: no such context in {where} (it has: {listed})",
        )


def _contexts(choice: KubeconfigChoice) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The kubeconfig's contexts by name, and the name of its current one, as kubectl reads
    them: each file of a KUBECONFIG path list in turn, the first to name a context wins. A
    current context that names nothing is no error until it is used (kubectl --context
    OTHER works then), so the files are read as they are, not through the client's loader,
    which refuses them."""
    import yaml  # noqa: PLC0415 - only the CLI needs it

    listed = choice.config_file() or os.path.expanduser("~/.kube/config")
    contexts: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for path in filter(None, listed.split(os.pathsep)):
        try:
            config = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(config, dict):
            continue
        for context in config.get("contexts") or []:
            if isinstance(context, dict) and context.get("name") is not None:
                contexts.setdefault(str(context["name"]), context)
        if current is None and config.get("current-context"):
            current = str(config["current-context"])
    return contexts, current
