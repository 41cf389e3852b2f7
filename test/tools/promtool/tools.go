//go:build tools

// Package promtool pins github.com/prometheus/prometheus/cmd/promtool.
package promtool

import _ "github.com/prometheus/prometheus/cmd/promtool"
