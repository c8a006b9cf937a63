#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
# and kubectl from the pinned Go modules next to this script, into a cache
# outside the checkout.
# The cache key is a hash of every file that decides the build, so the
# binaries are rebuilt only when a pinned version (or this script) changes.
# Prints the directory holding the binaries on stdout.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

key="$(cd "$here" && cat versions.env build.sh cache.sh \
    kube/go.mod kube/go.sum kube/cmd/*/main.go \
    kubectl/go.mod kubectl/go.sum kubectl/main.go \
    etcd/go.mod etcd/go.sum etcd/main.go | sha256sum | cut -c1-16)"
cache_root="${MTLS_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mtls-operator/control-plane}"
out="$cache_root/kubernetes-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-$key"

# shellcheck source=cache.sh
source "$here/cache.sh"
reuse_or_lock "$out" etcd kubectl kube-apiserver kube-controller-manager kube-scheduler kubelet

command -v go >/dev/null || { echo "build.sh: Go is required to build the control plane" >&2; exit 1; }

minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The same variables Kubernetes' own hack/lib/version.sh sets, so that
# `kubectl version` and the API server's /version report the real release.
version_flags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION"
    version_flags+=" -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

tmp="$out.partial"
rm -rf "$tmp"
mkdir -p "$tmp/bin"
started=$SECONDS
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
echo "building the control plane into $out (cold builds take a while)" >&2
(cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" .)
(cd "$here/kubectl" && go build -trimpath -ldflags "-s -w $version_flags" -o "$tmp/bin/kubectl" .)
for command in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    (cd "$here/kube" && go build -trimpath -ldflags "-s -w $version_flags" \
        -o "$tmp/bin/$command" "./cmd/$command")
done
rm -rf "$out"
mv "$tmp" "$out"
echo "built in $((SECONDS - started)) s: $(du -sh "$out/bin" | cut -f1)" >&2
echo "$out/bin"
