//go:build tools

// Package tools pins promtool (github.com/prometheus/prometheus/cmd/promtool),
// which the tests run to check and unit-test the shipped alerting rules.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
