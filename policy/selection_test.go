package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSelectingPrometheuses(t *testing.T) {
	release := &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kps"}}
	all := &metav1.LabelSelector{}
	proms := []PrometheusSelectors{
		// kube-prometheus-stack's defaults: release label, every namespace.
		{Namespace: "monitoring", Name: "kps", ServiceMonitor: release, ServiceMonitorNamespace: all, Rule: release, RuleNamespace: all},
		// A team Prometheus: everything in its own namespace only.
		{Namespace: "team-a", Name: "team", ServiceMonitor: all, PodMonitor: all, Rule: all},
	}
	tests := []struct {
		name string
		obj  Object
		ns   Namespace
		want []string
	}{
		{"a ServiceMonitor with the release label is loaded by the cluster Prometheus", Object{Kind: "ServiceMonitor", Namespace: "shop", Labels: map[string]string{"release": "kps"}}, Namespace{Name: "shop"}, []string{"monitoring/kps"}},
		{"a ServiceMonitor without it is loaded by no Prometheus", Object{Kind: "ServiceMonitor", Namespace: "shop"}, Namespace{Name: "shop"}, nil},
		{"a null namespace selector means the Prometheus' own namespace", Object{Kind: "ServiceMonitor", Namespace: "team-a"}, Namespace{Name: "team-a"}, []string{"team-a/team"}},
		{"a null object selector matches nothing", Object{Kind: "PodMonitor", Namespace: "shop", Labels: map[string]string{"release": "kps"}}, Namespace{Name: "shop"}, nil},
		{"both load a labelled rule in the team namespace", Object{Kind: "PrometheusRule", Namespace: "team-a", Labels: map[string]string{"release": "kps"}}, Namespace{Name: "team-a"}, []string{"monitoring/kps", "team-a/team"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, SelectingPrometheuses(proms, tt.obj, tt.ns)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
