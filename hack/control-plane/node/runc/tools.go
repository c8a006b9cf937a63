//go:build tools

// Package tools pins runc, the OCI runtime that containerd's shim starts
// every container with (built with cgo and libseccomp, as distributions do).
package tools

import _ "github.com/opencontainers/runc"
