#!/usr/bin/env bash
# Builds the tools the tests check with, as their users run them, from the
# pinned Go modules next to this script, into a cache outside the checkout:
#   promtool  (github.com/prometheus/prometheus/cmd/promtool): the alerting rules
#   kstatus   (sigs.k8s.io/cli-utils/pkg/kstatus): what Flux and kstatus users see
#   helm      (helm.sh/helm/v3/cmd/helm): the chart, linted, rendered and installed
#   krew      (sigs.k8s.io/krew/cmd/krew): the plugin manifest, installed from an archive
# The cache key is a hash of the files that decide each build, so a tool is
# rebuilt only when its pin (or this script) changes.
# Usage: build.sh TOOL...   Prints the path of each tool's binary on stdout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache_root="${MTLS_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mtls-operator/tools}"
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

package_of() {
    case "$1" in
        promtool) echo "github.com/prometheus/prometheus/cmd/promtool" ;;
        kstatus) echo "." ;;
        helm) echo "helm.sh/helm/v3/cmd/helm" ;;
        krew) echo "sigs.k8s.io/krew/cmd/krew" ;;
        *) echo "build.sh: unknown tool $1" >&2; exit 2 ;;
    esac
}

for tool in "$@"; do
    package="$(package_of "$tool")"
    key="$(cd "$here" && cat build.sh "$tool"/go.mod "$tool"/go.sum "$tool"/*.go | sha256sum | cut -c1-16)"
    out="$cache_root/$tool-$key"
    if [[ ! -x "$out/$tool" ]]; then
        command -v go >/dev/null || { echo "build.sh: Go is required to build $tool" >&2; exit 1; }
        echo "building $tool into $out" >&2
        started=$SECONDS
        mkdir -p "$out.partial"
        (cd "$here/$tool" && go build -trimpath -ldflags "-s -w" -o "$out.partial/$tool" "$package")
        rm -rf "$out"
        mv "$out.partial" "$out"
        echo "built $tool in $((SECONDS - started)) s" >&2
    fi
    echo "$out/$tool"
done
