package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the admission handlers' metrics. serve registers them with
// controller-runtime's registry, which the manager serves on
// --metrics-bind-address next to controller-runtime's own webhook metrics
// (and the TLS and policy metrics of packages selftls and policystore).
type Metrics struct {
	Requests        *prometheus.CounterVec
	Duration        *prometheus.HistogramVec
	Decisions       *prometheus.CounterVec
	LabelsInjected  *prometheus.CounterVec
	GateFindings    *prometheus.CounterVec
	LabelsCoerced   prometheus.Counter
	NamespaceErrors prometheus.Counter
	// PrometheusErrors counts failed reads of the Prometheus objects.
	PrometheusErrors prometheus.Counter
	Shed             *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_admission_requests_total",
			Help: "Admission requests handled, by webhook, kind and operation.",
		}, []string{"webhook", "kind", "operation"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "promenroll_admission_duration_seconds",
			Help: "Time to decide an admission request, by webhook.",
			// The API server gives a webhook timeoutSeconds (<= 5 here).
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"webhook"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_decisions_total",
			Help: "Admission decisions by kind, operation, decision (patch, allow, deny, warn, skip, error), mode and rule.",
		}, []string{"kind", "operation", "decision", "mode", "rule"}),
		LabelsInjected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_labels_injected_total",
			Help: "Labels added (mode enforce) or that would have been added (mode dry-run), by kind, target, rule and mode.",
		}, []string{"kind", "target", "rule", "mode"}),
		GateFindings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_gate_findings_total",
			Help: "Problems the gates found in PrometheusRules and monitors, by kind, check, level (deny, warn) and mode.",
		}, []string{"kind", "check", "level", "mode"}),
		LabelsCoerced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_rule_labels_coerced_total",
			Help: "PrometheusRule label and annotation values coerced from non-strings to strings.",
		}),
		NamespaceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_namespace_lookup_errors_total",
			Help: "Namespace lookups that failed; the request got an error and the webhook's failurePolicy applied.",
		}),
		PrometheusErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_prometheus_lookup_errors_total",
			Help: "Reads of the cluster's Prometheus objects (informer cache) that failed: /mutate skipped autoSelect and the selection warning with a warning; /validate refused monitors and rules when monitors.unselected is deny, so the webhook's failurePolicy applied.",
		}),
		Shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_shed_requests_total",
			Help: "Large requests answered at once with HTTP 429 because they could not start within the queue budget (--max-heavy-validations or --heavy-inflight-bytes in flight); the webhook's failurePolicy applied. By webhook (mutate, validate).",
		}, []string{"webhook"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Duration, m.Decisions, m.LabelsInjected, m.GateFindings,
			m.LabelsCoerced, m.NamespaceErrors, m.PrometheusErrors, m.Shed)
	}
	return m
}
