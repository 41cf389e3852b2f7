//go:build tools

// Package operator pins github.com/prometheus-operator/prometheus-operator's
// cmd/operator, which the e2e tests and the demo run out of cluster.
package operator

import _ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
