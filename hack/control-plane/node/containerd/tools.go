//go:build tools

// Package tools pins containerd, its CLI and its runc shim: the node's
// container runtime, which the kubelet drives through CRI.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
