package policy

import (
	"slices"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/promenroll/promenroll/internal/testdiff"
)

// fakeServices serves Services from a slice, as a cache would.
type fakeServices []Service

func (f fakeServices) Services(namespaces []string, all bool) []Service {
	var out []Service
	for _, s := range f {
		for _, ns := range namespaces {
			if all || s.Namespace == ns {
				out = append(out, s)
				break
			}
		}
		if all && len(namespaces) == 0 {
			out = append(out, s)
		}
	}
	return out
}

func TestServiceMonitorTargetWarnings(t *testing.T) {
	services := fakeServices{
		{Namespace: "shop", Name: "api", Labels: map[string]string{"app": "api"}, Ports: []Port{{Name: "http", Number: 80}, {Name: "metrics", Number: 9090}}},
		{Namespace: "shop", Name: "legacy", Labels: map[string]string{"app": "legacy"}, Ports: []Port{{Number: 8080}}},
		{Namespace: "billing", Name: "api", Labels: map[string]string{"app": "billing"}, Ports: []Port{{Name: "web", Number: 8080}}},
	}
	sm := func(selector map[string]string, nsSel monv1.NamespaceSelector, eps ...monv1.Endpoint) *monv1.ServiceMonitor {
		return &monv1.ServiceMonitor{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "shop"},
			Spec: monv1.ServiceMonitorSpec{Selector: metav1.LabelSelector{MatchLabels: selector}, NamespaceSelector: nsSel, Endpoints: eps}}
	}
	target := intstr.FromString("metrics")
	tests := []struct {
		name string
		sm   *monv1.ServiceMonitor
		want []string
	}{
		{"a port the selected Service declares: nothing to say", sm(map[string]string{"app": "api"}, monv1.NamespaceSelector{}, monv1.Endpoint{Port: "metrics"}), nil},
		{"a port no selected Service declares names the ports that exist", sm(map[string]string{"app": "api"}, monv1.NamespaceSelector{}, monv1.Endpoint{Port: "web"}),
			[]string{`spec.endpoints[0].port: Invalid value: "web": names no port of the selected Services (Service api: http, metrics): this endpoint yields no target; use one of those names`}},
		{"a Service whose only port is unnamed is called out", sm(map[string]string{"app": "legacy"}, monv1.NamespaceSelector{}, monv1.Endpoint{Port: "metrics"}),
			[]string{`spec.endpoints[0].port: Invalid value: "metrics": names no port of the selected Services (Service legacy: an unnamed port 8080, which endpoints[].port cannot select: name it): this endpoint yields no target; use one of those names`}},
		{"a targetPort that is a Service port's name is the usual confusion", sm(map[string]string{"app": "api"}, monv1.NamespaceSelector{}, monv1.Endpoint{TargetPort: &target}),
			[]string{`spec.endpoints[0].targetPort: Invalid value: "metrics": is the name of a Service port, but targetPort names a container port of the Pods: write port: metrics instead`}},
		{"a selector matching no Service in its own namespace (the Service may come next)", sm(map[string]string{"app": "billing"}, monv1.NamespaceSelector{}, monv1.Endpoint{Port: "web"}),
			[]string{`spec.selector: Invalid value: "app=billing": matches no Service in namespace shop: no target until one exists with these labels (fine if it is created next)`}},
		{"matchNames reaches other namespaces", sm(map[string]string{"app": "billing"}, monv1.NamespaceSelector{MatchNames: []string{"billing"}}, monv1.Endpoint{Port: "web"}), nil},
		{"any reaches every namespace", sm(map[string]string{"app": "billing"}, monv1.NamespaceSelector{Any: true}, monv1.Endpoint{Port: "web"}), nil},
		{"a manifest without a namespace is not compared with every namespace's Services", func() *monv1.ServiceMonitor {
			m := sm(map[string]string{"app": "api"}, monv1.NamespaceSelector{}, monv1.Endpoint{Port: "web"})
			m.Namespace = ""
			return m
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range ServiceMonitorTargetWarnings(tt.sm, services) {
				if f.Level != LevelWarn {
					t.Errorf("%v is a %s, want a warning", f.Err, f.Level)
				}
				got = append(got, f.Err.Error())
			}
			if diff := testdiff.Diff(tt.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeWorkloads serves workloads from a slice, as a cache would.
type fakeWorkloads []Workload

func (f fakeWorkloads) Workloads(namespaces []string, all bool) []Workload {
	var out []Workload
	for _, w := range f {
		if all || slices.Contains(namespaces, w.Namespace) {
			out = append(out, w)
		}
	}
	return out
}

func TestPodMonitorTargetWarnings(t *testing.T) {
	workloads := fakeWorkloads{
		{Kind: "Deployment", Namespace: "shop", Name: "api", PodLabels: map[string]string{"app": "api"}, Ports: []Port{{Name: "http", Number: 8080}, {Name: "metrics", Number: 9090}}},
		{Kind: "StatefulSet", Namespace: "shop", Name: "db", PodLabels: map[string]string{"app": "db"}},
	}
	name := func(s string) *string { return &s }
	number := func(n int32) *int32 { return &n }
	pm := func(selector map[string]string, eps ...monv1.PodMetricsEndpoint) *monv1.PodMonitor {
		return &monv1.PodMonitor{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "shop"},
			Spec: monv1.PodMonitorSpec{Selector: metav1.LabelSelector{MatchLabels: selector}, PodMetricsEndpoints: eps}}
	}
	tests := []struct {
		name string
		pm   *monv1.PodMonitor
		want []string
	}{
		{"a port the selected pod template declares: nothing to say", pm(map[string]string{"app": "api"}, monv1.PodMetricsEndpoint{Port: name("metrics")}), nil},
		{"a port number the template declares: nothing to say", pm(map[string]string{"app": "api"}, monv1.PodMetricsEndpoint{PortNumber: number(9090)}), nil},
		{"a port no selected template declares names the ports that exist", pm(map[string]string{"app": "api"}, monv1.PodMetricsEndpoint{Port: name("web")}),
			[]string{`spec.podMetricsEndpoints[0].port: Invalid value: "web": names no container port of the selected pod templates (Deployment api: http (8080), metrics (9090)): this endpoint yields no target; use one of those names`}},
		{"a port number no template declares", pm(map[string]string{"app": "db"}, monv1.PodMetricsEndpoint{PortNumber: number(5432)}),
			[]string{`spec.podMetricsEndpoints[0].portNumber: Invalid value: 5432: is no container port of the selected pod templates (StatefulSet db: no ports): this endpoint yields no target`}},
		{"a selector matching no workload's pods", pm(map[string]string{"app": "cron"}, monv1.PodMetricsEndpoint{Port: name("metrics")}),
			[]string{`spec.selector: Invalid value: "app=cron": matches the pod template of no Deployment, StatefulSet, DaemonSet, Job or CronJob in namespace shop: no target unless its Pods come from elsewhere or are created next`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range PodMonitorTargetWarnings(tt.pm, workloads) {
				got = append(got, f.Err.Error())
			}
			if diff := testdiff.Diff(tt.want, got); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}
