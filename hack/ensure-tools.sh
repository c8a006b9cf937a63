#!/usr/bin/env bash
# Installs the system tools the tests and the demo run for real: openssl,
# Python's venv module where the distribution ships it separately, the
# shells whose completion scripts the tests run (bash is there already), and
# what the local node needs: buildah and mmdebstrap to build its images
# without a Docker daemon, libseccomp's headers to build runc, and iproute2
# for its pod network.
# (Go is needed too, to build the control plane; it comes with the machine.)
set -euo pipefail
missing=()
command -v openssl >/dev/null || missing+=(openssl)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v zsh >/dev/null || missing+=(zsh)
command -v fish >/dev/null || missing+=(fish)
command -v buildah >/dev/null || missing+=(buildah)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v ip >/dev/null || missing+=(iproute2)
[[ -e /usr/include/seccomp.h ]] || missing+=(libseccomp-dev)
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "ensure-tools: please install: ${missing[*]}" >&2
        exit 1
    fi
    echo "ensure-tools: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
