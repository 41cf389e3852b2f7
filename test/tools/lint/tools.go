//go:build tools

// Package lint pins golangci-lint, built by `make lint` into bin/ like the
// other tools (nothing is downloaded prebuilt).
package lint

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
