//go:build tools

// Package tools pins the reference CNI plugins the node's pod network uses:
// a bridge on the host, host-local addresses, and the pod's loopback.
package tools

import (
	_ "github.com/containernetworking/plugins/plugins/ipam/host-local"
	_ "github.com/containernetworking/plugins/plugins/main/bridge"
	_ "github.com/containernetworking/plugins/plugins/main/loopback"
)
