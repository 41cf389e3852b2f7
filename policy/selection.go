package policy

// Selection: which Prometheus loads a ServiceMonitor, PodMonitor or
// PrometheusRule. Reads a Prometheus' spec.serviceMonitorSelector,
// serviceMonitorNamespaceSelector, podMonitorSelector,
// podMonitorNamespaceSelector, ruleSelector and ruleNamespaceSelector, and
// the object's namespace, namespace labels and labels.

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// PrometheusSelectors are the selectors of one monitoring.coreos.com/v1
// Prometheus that decide which monitors and rules it loads.
type PrometheusSelectors struct {
	Namespace, Name                                      string
	ServiceMonitor, ServiceMonitorNamespace              *metav1.LabelSelector
	PodMonitor, PodMonitorNamespace, Rule, RuleNamespace *metav1.LabelSelector
}

// SelectingPrometheuses returns, as namespace/name, the Prometheuses that
// load obj (a ServiceMonitor, PodMonitor or PrometheusRule), with the
// operator's semantics: a null object selector matches nothing and an empty
// one everything; a null namespace selector matches the Prometheus' own
// namespace only and an empty one every namespace.
func SelectingPrometheuses(proms []PrometheusSelectors, obj Object, ns Namespace) []string {
	var out []string
	for _, p := range proms {
		var sel, nsSel *metav1.LabelSelector
		switch obj.Kind {
		case "ServiceMonitor":
			sel, nsSel = p.ServiceMonitor, p.ServiceMonitorNamespace
		case "PodMonitor":
			sel, nsSel = p.PodMonitor, p.PodMonitorNamespace
		case "PrometheusRule":
			sel, nsSel = p.Rule, p.RuleNamespace
		default:
			continue
		}
		if !selectorMatches(sel, obj.Labels) {
			continue
		}
		if nsSel == nil && obj.Namespace != p.Namespace || nsSel != nil && !selectorMatches(nsSel, ns.Labels) {
			continue
		}
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

// selectorMatches: nil matches nothing; an invalid selector matches nothing.
func selectorMatches(s *metav1.LabelSelector, l map[string]string) bool {
	if s == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && sel.Matches(labels.Set(l))
}
