//go:build tools

// Package tools pins krew (sigs.k8s.io/krew/cmd/krew), which the tests run to
// install the plugin manifest of deploy/krew/ from a local archive.
package tools

import _ "sigs.k8s.io/krew/cmd/krew"
