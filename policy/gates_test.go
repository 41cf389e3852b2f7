package policy

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/promenroll/promenroll/internal/testdiff"
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
			if diff := testdiff.Diff(tt.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			if d := res.Report.Denials(); len(d) > 0 {
				t.Errorf("denied: %v", d)
			}
		})
	}
}

// TestTargetChecksInAScopeRunOnlyWhatTheScopeHolds: with only namespace
// shop read (audit -n shop), a ServiceMonitor that looks only at its own
// namespace is judged against shop's Services, and one that selects in any
// namespace says its target check was skipped instead of warning wrongly.
func TestTargetChecksInAScopeRunOnlyWhatTheScopeHolds(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	gk := schema.GroupKind{Group: groupMonitoring, Kind: "ServiceMonitor"}
	cs := ClusterState{Services: scopedServices{}, Scope: []string{"shop"}}
	own := []byte(`{"metadata":{"name":"web","namespace":"shop"},"spec":{"selector":{"matchLabels":{"app":"web"}},"endpoints":[{"port":"metrics"}]}}`)
	res, err := p.Gate(gk, own, Namespace{Name: "shop"}, cs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Report.Skipped) > 0 || len(res.Report.Warnings()) != 1 || !strings.Contains(res.Report.Warnings()[0].Error(), "matches no Service in namespace shop") {
		t.Errorf("own namespace: skipped %q, warnings %v; want the check run", res.Report.Skipped, res.Report.Warnings())
	}
	anyNS := []byte(`{"metadata":{"name":"web","namespace":"shop"},"spec":{"namespaceSelector":{"any":true},"selector":{"matchLabels":{"app":"web"}},"endpoints":[{"port":"metrics"}]}}`)
	if res, err = p.Gate(gk, anyNS, Namespace{Name: "shop"}, cs); err != nil {
		t.Fatal(err)
	}
	if len(res.Report.Warnings()) > 0 || len(res.Report.Skipped) != 1 || !strings.Contains(res.Report.Skipped[0], "selects Services in any namespace, and only shop were read") {
		t.Errorf("any namespace: skipped %q, warnings %v; want the check skipped and said", res.Report.Skipped, res.Report.Warnings())
	}
}

// scopedServices is a namespace with no Service.
type scopedServices struct{}

func (scopedServices) Services([]string, bool) []Service { return nil }
