package policystore

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the policy's metrics.
type Metrics struct {
	Reloads *prometheus.CounterVec
	Info    *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_policy_reloads_total",
			Help: "Policy loads by result (success, error). On error the last good policy stays in force.",
		}, []string{"result"}),
		Info: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promenroll_policy_info",
			Help: "The policy in force: 1 for its generation (content hash) and mode.",
		}, []string{"generation", "mode"}),
	}
	if reg != nil {
		reg.MustRegister(m.Reloads, m.Info)
	}
	return m
}
