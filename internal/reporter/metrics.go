package reporter

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/promenroll/promenroll/policy"
)

// Metrics are the status' metrics: counts by namespace, check and result
// (never a label per object), and the reporter's own health.
type Metrics struct {
	// Results: the last cycle's results, by namespace, check (scraped,
	// monitor-loaded, rules-evaluate), result and state.
	Results *prometheus.GaugeVec
	// CycleDuration, CycleErrors and LastSuccess: the cycles.
	CycleDuration prometheus.Histogram
	CycleErrors   prometheus.Counter
	LastSuccess   prometheus.Gauge
	// PrometheusErrors and PrometheusUp: asking each Prometheus.
	PrometheusErrors *prometheus.CounterVec
	PrometheusUp     *prometheus.GaugeVec
	// Events told; EventsDeferred past the per-cycle bound; ReportWrites
	// (applies and deletes).
	Events, EventsDeferred, ReportWrites prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Results: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promenroll_status_results",
			Help: "Objects by namespace, status check (scraped, monitor-loaded, rules-evaluate), result (pass, warn, fail, error, skip) and state, at the last status cycle.",
		}, []string{"namespace", "check", "result", "state"}),
		CycleDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "promenroll_status_cycle_duration_seconds",
			Help:    "Time of one status cycle: reading the caches, asking the Prometheuses, publishing.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		CycleErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_status_cycle_errors_total",
			Help: "Status cycles that failed in part (reading a cache, writing a Report).",
		}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "promenroll_status_last_success_timestamp_seconds",
			Help: "When a status cycle last completed without error (Unix time).",
		}),
		PrometheusErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "promenroll_status_prometheus_errors_total",
			Help: "Failed questions to a Prometheus (targets or rules), by Prometheus (namespace/name).",
		}, []string{"prometheus"}),
		PrometheusUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "promenroll_status_prometheus_up",
			Help: "1 when the Prometheus answered the last status cycle, 0 when it did not, by Prometheus (namespace/name).",
		}, []string{"prometheus"}),
		Events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_status_events_total",
			Help: "Events told on objects whose status changed.",
		}),
		EventsDeferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_status_events_deferred_total",
			Help: "Changes of status not told in their cycle (past the per-cycle bound); they are told in a later one.",
		}),
		ReportWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "promenroll_status_report_writes_total",
			Help: "OpenReports Reports applied or deleted (only when their content changed).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Results, m.CycleDuration, m.CycleErrors, m.LastSuccess, m.PrometheusErrors, m.PrometheusUp, m.Events, m.EventsDeferred, m.ReportWrites)
	}
	return m
}

func (m *Metrics) cycle(d time.Duration, err error) {
	m.CycleDuration.Observe(d.Seconds())
	if err != nil {
		m.CycleErrors.Inc()
		return
	}
	m.LastSuccess.SetToCurrentTime()
}

func (m *Metrics) askError(prom string) { m.PrometheusErrors.WithLabelValues(prom).Inc() }

func (m *Metrics) reachable(prom string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.PrometheusUp.WithLabelValues(prom).Set(v)
}

// publish replaces the result counts with this cycle's.
func (m *Metrics) publish(results []policy.StatusResult) {
	type key struct{ ns, check, result, state string }
	counts := map[key]float64{}
	for _, r := range results {
		counts[key{r.Subject.Namespace, r.Check, string(r.Outcome), r.State}]++
	}
	m.Results.Reset()
	for k, n := range counts {
		m.Results.WithLabelValues(k.ns, k.check, k.result, k.state).Set(n)
	}
}
