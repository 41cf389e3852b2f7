package policy

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promenroll/promenroll/internal/testdiff"
)

func TestSelectingPrometheuses(t *testing.T) {
	release := &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kps"}}
	all := &metav1.LabelSelector{}
	proms := []PrometheusSelectors{
		// kube-prometheus-stack's defaults: release label, every namespace.
		{Namespace: "monitoring", Name: "kps", ServiceMonitor: release, ServiceMonitorNamespace: all, Rule: release, RuleNamespace: all},
		// A team Prometheus: everything in its own namespace only.
		{Namespace: "team-a", Name: "team", ServiceMonitor: all, PodMonitor: all, Rule: all},
		// A blackbox Prometheus: Probes everywhere, ScrapeConfigs labelled
		// release=kps in its own namespace.
		{Namespace: "blackbox", Name: "bb", Probe: all, ProbeNamespace: all, ScrapeConfig: release},
		// An agent: loads monitors, never rules.
		{Kind: KindPrometheusAgent, Namespace: "agents", Name: "agent", ScrapeConfig: all, ScrapeConfigNamespace: all, Rule: all, RuleNamespace: all},
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
		{"probeSelector and probeNamespaceSelector decide for a Probe", Object{Kind: "Probe", Namespace: "shop"}, Namespace{Name: "shop"}, []string{"blackbox/bb"}},
		{"scrapeConfigSelector with a null namespace selector: own namespace only", Object{Kind: "ScrapeConfig", Namespace: "shop", Labels: map[string]string{"release": "kps"}}, Namespace{Name: "shop"}, []string{"agents/agent"}},
		{"a ScrapeConfig in the Prometheus' namespace with its label", Object{Kind: "ScrapeConfig", Namespace: "blackbox", Labels: map[string]string{"release": "kps"}}, Namespace{Name: "blackbox"}, []string{"blackbox/bb", "agents/agent"}},
		{"an agent loads no rule whatever its selectors", Object{Kind: "PrometheusRule", Namespace: "agents"}, Namespace{Name: "agents"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := testdiff.Diff(tt.want, SelectingPrometheuses(proms, tt.obj, tt.ns)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestWhyNotSelected: the explanation names the nearest Prometheus and the
// exact difference, with the operator's semantics (a null object selector
// selects nothing; a null namespace selector means the Prometheus' own
// namespace; matchExpressions are requirements like any other).
func TestWhyNotSelected(t *testing.T) {
	release := &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kube-prometheus-stack"}}
	enabled := &metav1.LabelSelector{MatchLabels: map[string]string{"monitoring": "enabled"}}
	teamExpr := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}
	kps := PrometheusSelectors{Namespace: "monitoring", Name: "k8s", ServiceMonitor: release, ServiceMonitorNamespace: &metav1.LabelSelector{}, Rule: release, RuleNamespace: enabled}
	team := PrometheusSelectors{Namespace: "team-a", Name: "team", ServiceMonitor: teamExpr}
	sm := func(ns string, l map[string]string) Object {
		return Object{Kind: "ServiceMonitor", Namespace: ns, Labels: l}
	}
	tests := []struct {
		name  string
		proms []PrometheusSelectors
		obj   Object
		ns    Namespace
		want  string
	}{
		{"selected: nothing to say", []PrometheusSelectors{kps}, sm("shop", map[string]string{"release": "kube-prometheus-stack"}), Namespace{Name: "shop"}, ""},
		{"no Prometheus at all: nothing to compare with", nil, sm("shop", nil), Namespace{Name: "shop"}, ""},
		{"a different release value", []PrometheusSelectors{kps}, sm("shop", map[string]string{"release": "prom"}), Namespace{Name: "shop"},
			"Prometheus monitoring/k8s selects ServiceMonitors with release=kube-prometheus-stack; this one has release=prom"},
		{"a missing release label", []PrometheusSelectors{kps}, sm("shop", nil), Namespace{Name: "shop"},
			"Prometheus monitoring/k8s selects ServiceMonitors with release=kube-prometheus-stack; this one has no label release"},
		{"a namespace the namespace selector does not reach", []PrometheusSelectors{kps},
			Object{Kind: "PrometheusRule", Namespace: "team-a", Labels: map[string]string{"release": "kube-prometheus-stack"}}, Namespace{Name: "team-a"},
			"Prometheus monitoring/k8s's ruleNamespaceSelector requires monitoring=enabled; namespace team-a has no label monitoring"},
		{"a null namespace selector: only the Prometheus' own namespace", []PrometheusSelectors{team}, sm("shop", map[string]string{"team": "a"}), Namespace{Name: "shop"},
			"Prometheus team-a/team loads ServiceMonitors from its own namespace team-a only (serviceMonitorNamespaceSelector is not set)"},
		{"a matchExpressions requirement", []PrometheusSelectors{team}, sm("team-a", map[string]string{"team": "c"}), Namespace{Name: "team-a"},
			"Prometheus team-a/team selects ServiceMonitors with team in (a,b); this one has team=c"},
		{"a null object selector selects nothing", []PrometheusSelectors{kps}, Object{Kind: "PodMonitor", Namespace: "shop"}, Namespace{Name: "shop"},
			"Prometheus monitoring/k8s selects no PodMonitors (podMonitorSelector is not set); Prometheus monitoring/k8s loads PodMonitors from its own namespace monitoring only (podMonitorNamespaceSelector is not set)"},
		{"the nearest of two is named", []PrometheusSelectors{team, kps}, sm("shop", map[string]string{"release": "prom"}), Namespace{Name: "shop"},
			"Prometheus monitoring/k8s selects ServiceMonitors with release=kube-prometheus-stack; this one has release=prom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := testdiff.Diff(tt.want, WhyNotSelected(tt.proms, tt.obj, tt.ns)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestPrometheusAgentsLoadMonitorsButNotRules(t *testing.T) {
	all := &metav1.LabelSelector{}
	agent := PrometheusSelectors{Kind: KindPrometheusAgent, Namespace: "agents", Name: "edge",
		ServiceMonitor: all, ServiceMonitorNamespace: all, Rule: all, RuleNamespace: all}
	sm := Object{Kind: "ServiceMonitor", Namespace: "shop"}
	if got := SelectingPrometheuses([]PrometheusSelectors{agent}, sm, Namespace{Name: "shop"}); len(got) != 1 {
		t.Errorf("a PrometheusAgent selecting every ServiceMonitor loads none: %v", got)
	}
	rule := Object{Kind: "PrometheusRule", Namespace: "shop"}
	if got := SelectingPrometheuses([]PrometheusSelectors{agent}, rule, Namespace{Name: "shop"}); len(got) != 0 {
		t.Errorf("a PrometheusAgent loads rules: %v", got)
	}
	withRelease := PrometheusSelectors{Kind: KindPrometheusAgent, Namespace: "agents", Name: "edge",
		PodMonitor: &metav1.LabelSelector{MatchLabels: map[string]string{"release": "agent"}}, PodMonitorNamespace: all}
	want := "PrometheusAgent agents/edge selects PodMonitors with release=agent; this one has no label release"
	if got := WhyNotSelected([]PrometheusSelectors{withRelease}, Object{Kind: "PodMonitor", Namespace: "shop"}, Namespace{Name: "shop"}); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
