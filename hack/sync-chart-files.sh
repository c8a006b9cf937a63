#!/usr/bin/env bash
# Copies the files the Helm chart renders verbatim from their one source in
# the repository into charts/mtls-operator/files/: the CRDs (crds/*.yaml,
# rendered as templates so that crds.install and crds.keep can act on them)
# and the monitoring rules and dashboard (deploy/monitoring/). Helm cannot
# read files outside the chart, hence the copies; tests/ship/test_chart.py
# fails when they differ and names this script.
#
# Likewise the operator's roles (deploy/base/rbac.yaml) into the package,
# whose start-up check asks for exactly the permissions they grant;
# tests/unit/test_preflight.py fails when the copy differs.
set -euo pipefail
cd "$(dirname "$0")/.."

files=charts/mtls-operator/files
rm -f "$files"/crds/*.yaml
mkdir -p "$files/crds" "$files/monitoring"
for crd in crds/*.yaml; do
    # crds/kustomization.yaml lists the CRDs for kustomize; it is no CRD.
    [[ $(basename "$crd") == kustomization.yaml ]] && continue
    cp "$crd" "$files/crds/"
done
cp deploy/monitoring/rules.yaml deploy/monitoring/dashboard.json "$files/monitoring/"
cp deploy/base/rbac.yaml operator/mtls_operator/rbac.yaml
