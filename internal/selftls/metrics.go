package selftls

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the self-managed certificates' metrics.
type Metrics struct {
	Issued *prometheus.CounterVec
	Errors prometheus.Counter
	Expiry prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_tls_certificates_issued_total",
			Help: "Certificates written to the self-managed Secret by the leader, by certificate (ca, serving) and reason (missing, unusable, expired, not-yet-valid, wrong-name, untrusted, renewal, new-ca). Any reason but renewal and new-ca means the Secret was repaired.",
		}, []string{"certificate", "reason"}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_tls_rotation_errors_total",
			Help: "Failed steps of the self-managed certificate rotation (retried with backoff; see the log).",
		}),
		Expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promenroll_tls_serving_certificate_expiry_timestamp_seconds",
			Help: "When the certificate this replica serves expires (Unix time).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Issued, m.Errors, m.Expiry)
	}
	return m
}
