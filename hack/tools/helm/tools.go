//go:build tools

// Package tools pins helm (helm.sh/helm/v3/cmd/helm), which the tests run to
// lint, render, install, upgrade and uninstall the chart as its users do.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
