"""The Helm chart as tests see it: the real helm (hack/tools, built from its Go module),
renders of the chart and of deploy/, and the one list of what may differ between them."""

from __future__ import annotations

import copy
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from built_tools import tool
from ship.manifests import Object
from support.paths import REPO_ROOT

CHART = REPO_ROOT / "charts" / "mtls-operator"
RELEASE = "mtls-operator"
NAMESPACE = "mtls-operator"
# The pinned control plane's version: without a cluster, helm assumes Kubernetes 1.20,
# which the chart's kubeVersion (>=1.37.0-0) refuses.
KUBE_VERSION = "1.37.2"
KEEP = ("helm.sh/resource-policy", "keep")

Key = tuple[str, str, str]


def helm_labels(release: str = RELEASE) -> dict[str, str]:
    """The labels the chart adds to every object on top of deploy/'s (Helm's conventions)."""
    return {
        "helm.sh/chart": "mtls-operator-0.1.0",
        "app.kubernetes.io/managed-by": "Helm",
        "app.kubernetes.io/instance": release,
    }


@dataclass(frozen=True)
class Helm:
    """helm with its cache, config and data in a directory of the test's own."""

    home: Path
    kubeconfig: Path | None = None

    def env(self) -> dict[str, str]:
        dirs = {
            "HELM_CACHE_HOME": self.home / "cache",
            "HELM_CONFIG_HOME": self.home / "config",
            "HELM_DATA_HOME": self.home / "data",
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        env = {name: str(path) for name, path in dirs.items()}
        # helm reads HOME for nothing else, but keep it off the user's home anyway.
        return {**env, "HOME": str(self.home), "PATH": "/usr/bin:/bin"}

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(tool("helm"))]
        if self.kubeconfig is not None:
            argv += ["--kubeconfig", str(self.kubeconfig)]
        result = subprocess.run(
            [*argv, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"helm {' '.join(args)} exited with {result.returncode}:\n{result.stderr}"
            )
        return result

    def template(self, *args: str, release: str = RELEASE, namespace: str = NAMESPACE) -> str:
        return self(
            "template",
            release,
            str(CHART),
            "-n",
            namespace,
            "--kube-version",
            KUBE_VERSION,
            *args,
        ).stdout


def documents(text: str) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def key(obj: Object) -> Key:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def by_key(objects: list[Object]) -> dict[Key, Object]:
    keyed = {key(o): o for o in objects}
    assert len(keyed) == len(objects), "two objects of the same kind, namespace and name"
    return keyed


def without_helm_additions(
    chart: list[Object], release: str = RELEASE, *, keep_crds: bool = True
) -> list[Object]:
    """The chart's objects less exactly what the chart adds to deploy/'s, each addition
    asserted present first (so a label the chart forgot is a failure, not a pass):

    - Helm's three labels (helm_labels()) in every object's metadata.labels, and the
      labels map itself when nothing else is left in it;
    - helm.sh/resource-policy: keep in the CRDs' metadata.annotations (crds.keep), and the
      annotations map when nothing else is left in it.

    Nothing else is changed: pod template labels, selectors and specs are compared as they are.
    """
    expected = helm_labels(release)
    result = []
    for original in chart:
        obj = copy.deepcopy(original)
        metadata = obj["metadata"]
        labels = metadata.get("labels") or {}
        for name, value in expected.items():
            assert labels.get(name) == value, f"{key(obj)}: label {name} is {labels.get(name)!r}"
            del labels[name]
        if not labels:
            metadata.pop("labels", None)
        if obj["kind"] == "CustomResourceDefinition" and keep_crds:
            annotations = metadata.get("annotations") or {}
            assert annotations.get(KEEP[0]) == KEEP[1], f"{key(obj)}: no {KEEP[0]}: {KEEP[1]}"
            del annotations[KEEP[0]]
            if not annotations:
                metadata.pop("annotations")
        result.append(obj)
    return result


def without_namespace(kustomized: list[Object], namespace: str = NAMESPACE) -> list[Object]:
    """deploy/'s render less its Namespace, which a Helm release cannot own: the release is
    stored in it before anything is created, and `--create-namespace` makes it."""
    rest = [o for o in kustomized if key(o) != ("Namespace", "", namespace)]
    assert len(rest) == len(kustomized) - 1, f"deploy/ renders no Namespace {namespace}"
    return rest
