//go:build tools

// Package promtool pins github.com/prometheus/prometheus/cmd/promtool (the
// rule gate's agreement test) and cmd/prometheus (the e2e monitoring stack).
package promtool

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
