package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Metrics are promenroll's Prometheus metrics. They are registered with
// controller-runtime's registry, which the manager serves on
// --metrics-bind-address next to controller-runtime's own webhook metrics.
type Metrics struct {
	Requests        *prometheus.CounterVec
	Duration        *prometheus.HistogramVec
	Decisions       *prometheus.CounterVec
	LabelsInjected  *prometheus.CounterVec
	GateFindings    *prometheus.CounterVec
	PolicyReloads   *prometheus.CounterVec
	PolicyInfo      *prometheus.GaugeVec
	LabelsCoerced   prometheus.Counter
	NamespaceErrors prometheus.Counter
	// PrometheusErrors counts failed reads of the Prometheus objects.
	PrometheusErrors prometheus.Counter
	TLSIssued        *prometheus.CounterVec
	TLSErrors        prometheus.Counter
	CertExpiry       prometheus.Gauge
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
		PolicyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_policy_reloads_total",
			Help: "Policy loads by result (success, error). On error the last good policy stays in force.",
		}, []string{"result"}),
		PolicyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promenroll_policy_info",
			Help: "The policy in force: 1 for its generation (content hash) and mode.",
		}, []string{"generation", "mode"}),
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
		TLSIssued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_tls_certificates_issued_total",
			Help: "Certificates written to the self-managed Secret by the leader, by certificate (ca, serving) and reason (missing, unusable, expired, not-yet-valid, wrong-name, untrusted, renewal, new-ca). Any reason but renewal and new-ca means the Secret was repaired.",
		}, []string{"certificate", "reason"}),
		TLSErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_tls_rotation_errors_total",
			Help: "Failed steps of the self-managed certificate rotation (retried with backoff; see the log).",
		}),
		Shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_shed_requests_total",
			Help: "Large requests answered at once with HTTP 429 because they could not start within the queue budget (--max-heavy-validations or --heavy-inflight-bytes in flight); the webhook's failurePolicy applied. By webhook (mutate, validate).",
		}, []string{"webhook"}),
		CertExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promenroll_tls_serving_certificate_expiry_timestamp_seconds",
			Help: "When the certificate this replica serves expires (Unix time).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Duration, m.Decisions, m.LabelsInjected, m.GateFindings,
			m.PolicyReloads, m.PolicyInfo, m.LabelsCoerced, m.NamespaceErrors, m.PrometheusErrors,
			m.TLSIssued, m.TLSErrors, m.CertExpiry, m.Shed)
	}
	return m
}

// DefaultRegistry is controller-runtime's registry, served by the manager.
var DefaultRegistry prometheus.Registerer = ctrlmetrics.Registry
