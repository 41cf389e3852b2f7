// Module promtool builds `promtool` from the same Prometheus module version
// the product pins (checked by policy's agreement test), with no replace
// directives, so its verdicts are Prometheus' own.
module github.com/promenroll/promenroll/test/tools/promtool

go 1.26.0

require github.com/prometheus/prometheus v0.316.0
