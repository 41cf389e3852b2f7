package policy

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promenroll/promenroll/internal/testdiff"
)

func TestAutoSelect(t *testing.T) {
	p := mustParse(t, minimalPolicy+"monitors:\n  autoSelect: monitoring/k8s\n")
	k8s := PrometheusSelectors{Namespace: "monitoring", Name: "k8s",
		ServiceMonitor: &metav1.LabelSelector{
			MatchLabels:      map[string]string{"release": "kube-prometheus-stack"},
			MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"platform"}}},
		},
		ServiceMonitorNamespace: &metav1.LabelSelector{MatchLabels: map[string]string{"monitoring": "enabled"}},
		Rule:                    &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpExists}}},
		RuleNamespace:           &metav1.LabelSelector{},
	}
	enabled := Namespace{Name: "shop", Labels: map[string]string{"monitoring": "enabled"}}
	add := func(k, v string) LabelChange { return change(MetadataLabels, k, v, AutoSelectRule) }
	tests := []struct {
		name  string
		obj   Object
		ns    Namespace
		proms []PrometheusSelectors
		want  Decision
	}{{
		name: "the labels the live selector requires are added: matchLabels and one-value In",
		obj:  Object{Kind: "ServiceMonitor", Namespace: "shop"}, ns: enabled, proms: []PrometheusSelectors{k8s},
		want: Decision{Matched: []string{MonitorsRule}, Changes: []LabelChange{add("release", "kube-prometheus-stack"), add("tier", "platform")}},
	}, {
		name: "a label the object has with another value is kept, and said",
		obj:  Object{Kind: "ServiceMonitor", Namespace: "shop", Labels: map[string]string{"release": "prom"}}, ns: enabled, proms: []PrometheusSelectors{k8s},
		want: Decision{Matched: []string{MonitorsRule}, Changes: []LabelChange{add("tier", "platform")},
			Warnings: []string{`metadata.labels release="prom" kept; rule monitors.autoSelect wants "kube-prometheus-stack"`}},
	}, {
		name: "a namespace the Prometheus does not select is said, not fixed",
		obj:  Object{Kind: "ServiceMonitor", Namespace: "legacy"}, ns: Namespace{Name: "legacy"}, proms: []PrometheusSelectors{k8s},
		want: Decision{Matched: []string{MonitorsRule}, Changes: []LabelChange{add("release", "kube-prometheus-stack"), add("tier", "platform")},
			Warnings: []string{"monitors.autoSelect: Prometheus monitoring/k8s's serviceMonitorNamespaceSelector requires monitoring=enabled; namespace legacy has no label monitoring: label the namespace"}},
	}, {
		name: "an Exists expression cannot be satisfied by choosing a value",
		obj:  Object{Kind: "PrometheusRule", Namespace: "shop"}, ns: enabled, proms: []PrometheusSelectors{k8s},
		want: Decision{Matched: []string{MonitorsRule},
			Warnings: []string{"monitors.autoSelect: Prometheus monitoring/k8s's ruleSelector requires team, which adding labels cannot choose; this one has no label team"}},
	}, {
		name: "a null selector selects nothing",
		obj:  Object{Kind: "PodMonitor", Namespace: "shop"}, ns: enabled, proms: []PrometheusSelectors{k8s},
		want: Decision{Matched: []string{MonitorsRule},
			Warnings: []string{"monitors.autoSelect: Prometheus monitoring/k8s selects no PodMonitors (podMonitorSelector is not set): no label can change that"}},
	}, {
		name: "no such Prometheus (yet): nothing added, nothing said",
		obj:  Object{Kind: "ServiceMonitor", Namespace: "shop"}, ns: enabled,
		want: Decision{Matched: []string{MonitorsRule}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := testdiff.Diff(tt.want, p.MonitorLabels(tt.obj, tt.ns, tt.proms)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAutoSelectMustNameAPrometheus(t *testing.T) {
	if _, err := Parse("policy.yaml", []byte(minimalPolicy+"monitors:\n  autoSelect: k8s\n"), Options{}); err == nil {
		t.Error("autoSelect without a namespace was accepted")
	}
}
