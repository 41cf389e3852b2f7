//go:build tools

// Package helmdocs pins helm-docs, which writes charts/promenroll/README.md
// from values.yaml; `make chart-docs` builds it into bin/ and runs it, and
// `make lint` fails when the committed README is not what it writes.
package helmdocs

import _ "github.com/norwoodj/helm-docs/cmd/helm-docs"
