package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestGateWarnsAboutATimeoutAboveTheLoadingPrometheusInterval(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	all := &metav1.LabelSelector{}
	prom := func(interval string) []PrometheusSelectors {
		return []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", ServiceMonitor: all, ServiceMonitorNamespace: all, PodMonitor: all, PodMonitorNamespace: all, ScrapeInterval: interval}}
	}
	sm := []byte(`{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"api","namespace":"shop"},"spec":{"selector":{},"endpoints":[{"port":"web","scrapeTimeout":"45s"},{"port":"admin","interval":"1m","scrapeTimeout":"45s"}]}}`)
	pm := []byte(`{"apiVersion":"monitoring.coreos.com/v1","kind":"PodMonitor","metadata":{"name":"api","namespace":"shop"},"spec":{"selector":{},"podMetricsEndpoints":[{"port":"web","scrapeTimeout":"45s"}]}}`)
	tests := []struct {
		name  string
		kind  string
		raw   []byte
		proms []PrometheusSelectors
		want  []string
	}{
		{"a ServiceMonitor endpoint without interval, timeout above the Prometheus' 30s", "ServiceMonitor", sm, prom("30s"),
			[]string{`spec.endpoints[0].scrapeTimeout: Invalid value: "45s": greater than the scrapeInterval 30s of Prometheus monitoring/k8s, which loads this monitor and will reject it: set interval on the endpoint or lower scrapeTimeout`}},
		{"the Prometheus scrapes every minute: fine", "ServiceMonitor", sm, prom("1m"), nil},
		{"no Prometheus known: nothing to compare", "ServiceMonitor", sm, nil, nil},
		{"a PodMonitor endpoint the same", "PodMonitor", pm, prom("30s"),
			[]string{`spec.podMetricsEndpoints[0].scrapeTimeout: Invalid value: "45s": greater than the scrapeInterval 30s of Prometheus monitoring/k8s, which loads this monitor and will reject it: set interval on the endpoint or lower scrapeTimeout`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := p.Gate(schema.GroupKind{Group: "monitoring.coreos.com", Kind: tt.kind}, tt.raw, Namespace{Name: "shop"}, ClusterState{Prometheuses: tt.proms})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range res.Report.Warnings() {
				got = append(got, e.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if d := res.Report.Denials(); len(d) > 0 {
				t.Errorf("denied: %v", d)
			}
		})
	}
}
