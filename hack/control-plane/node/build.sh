#!/usr/bin/env bash
# Builds the node's container runtime from the pinned Go modules next to this
# script, into a cache outside the checkout:
#   containerd, ctr, containerd-shim-runc-v2  (containerd/)
#   runc, with cgo and libseccomp as distributions build it  (runc/)
#   the CNI plugins bridge, host-local and loopback  (cni/)
#   pause, the sandbox container's binary  (pause/)
# The kubelet is built with the control plane (../build.sh). The cache key is
# a hash of every file that decides the build. Prints the directory holding
# the binaries on stdout; progress goes to stderr.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
key="$(cd "$here" && cat build.sh ../cache.sh */go.mod */go.sum */*.go 2>/dev/null | sha256sum | cut -c1-16)"
cache_root="${MTLS_CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mtls-operator/control-plane}"
out="$cache_root/node-$key"

# shellcheck source=../cache.sh
source "$here/../cache.sh"
reuse_or_lock "$out" containerd ctr containerd-shim-runc-v2 runc pause cni/bridge cni/host-local cni/loopback

command -v go >/dev/null || { echo "build.sh: Go is required to build the node" >&2; exit 1; }
[[ -e /usr/include/seccomp.h ]] || {
    echo "build.sh: runc needs libseccomp's headers: apt-get install libseccomp-dev" >&2
    exit 1
}

tmp="$out.partial"
rm -rf "$tmp"
mkdir -p "$tmp/bin/cni"
started=$SECONDS
export GOFLAGS="-mod=readonly -buildvcs=false"
echo "building the node's runtime into $out" >&2
# The snapshotters this node does not use need C libraries; leave them out.
(cd "$here/containerd" && for command in containerd ctr containerd-shim-runc-v2; do
    CGO_ENABLED=0 go build -trimpath -tags "no_btrfs no_devmapper no_zfs" -ldflags "-s -w" \
        -o "$tmp/bin/$command" "github.com/containerd/containerd/v2/cmd/$command"
done)
(cd "$here/runc" && CGO_ENABLED=1 go build -trimpath -tags seccomp -ldflags "-s -w" \
    -o "$tmp/bin/runc" github.com/opencontainers/runc)
(cd "$here/cni" && for plugin in ipam/host-local main/bridge main/loopback; do
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
        -o "$tmp/bin/cni/${plugin#*/}" "github.com/containernetworking/plugins/plugins/$plugin"
done)
(cd "$here/pause" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/bin/pause" .)
rm -rf "$out"
mv "$tmp" "$out"
echo "built in $((SECONDS - started)) s: $(du -sh "$out/bin" | cut -f1)" >&2
echo "$out/bin"
