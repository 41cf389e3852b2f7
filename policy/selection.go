package policy

// Selection: which Prometheus loads a ServiceMonitor, PodMonitor or
// PrometheusRule. Reads a Prometheus' spec.serviceMonitorSelector,
// serviceMonitorNamespaceSelector, podMonitorSelector,
// podMonitorNamespaceSelector, ruleSelector and ruleNamespaceSelector, and
// the object's namespace, namespace labels and labels.

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// PrometheusSelectors are the selectors of one monitoring.coreos.com/v1
// Prometheus that decide which monitors and rules it loads.
type PrometheusSelectors struct {
	// Kind is Prometheus (the zero value), PrometheusAgent, which loads
	// monitors but no rules, or Alertmanager, which loads
	// AlertmanagerConfigs only.
	Kind                                                 string
	Namespace, Name                                      string
	ServiceMonitor, ServiceMonitorNamespace              *metav1.LabelSelector
	PodMonitor, PodMonitorNamespace, Rule, RuleNamespace *metav1.LabelSelector
	Probe, ProbeNamespace                                *metav1.LabelSelector
	ScrapeConfig, ScrapeConfigNamespace                  *metav1.LabelSelector
	// AlertmanagerConfig and AlertmanagerConfigNamespace are an
	// Alertmanager's (Kind Alertmanager), which loads AlertmanagerConfigs
	// and nothing else.
	AlertmanagerConfig, AlertmanagerConfigNamespace *metav1.LabelSelector
	// ScrapeInterval is spec.scrapeInterval (the CRD defaults it to 30s).
	ScrapeInterval string
	// Version is spec.version ("": the operator's default,
	// DefaultPrometheusVersion): the version gates read it.
	Version string
	// APIURL is where its HTTP API answers by default: the operator's
	// governing Service in its namespace, port web (9090), with its scheme
	// and route prefix (the status asks it).
	APIURL string
}

// SelectingPrometheuses returns, as namespace/name, the Prometheuses that
// load obj (a ServiceMonitor, PodMonitor or PrometheusRule), with the
// operator's semantics: a null object selector matches nothing and an empty
// one everything; a null namespace selector matches the Prometheus' own
// namespace only and an empty one every namespace.
func SelectingPrometheuses(proms []PrometheusSelectors, obj Object, ns Namespace) []string {
	var out []string
	for _, p := range loaders(proms, obj, ns) {
		out = append(out, p.Namespace+"/"+p.Name)
	}
	return out
}

// loaders returns the Prometheuses that load obj.
func loaders(proms []PrometheusSelectors, obj Object, ns Namespace) []PrometheusSelectors {
	var out []PrometheusSelectors
	for _, p := range proms {
		sel, nsSel, _, _, ok := p.selectorsFor(obj.Kind)
		if !ok || !selectorMatches(sel, obj.Labels) {
			continue
		}
		if nsSel == nil && obj.Namespace != p.Namespace || nsSel != nil && !selectorMatches(nsSel, ns.Labels) {
			continue
		}
		out = append(out, p)
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

// selectorsFor returns the object and namespace selectors a Prometheus uses
// for kind, and the field names that hold them.
func (p PrometheusSelectors) selectorsFor(kind string) (sel, nsSel *metav1.LabelSelector, selField, nsField string, ok bool) {
	if (p.Kind == KindAlertmanager) != (kind == "AlertmanagerConfig") {
		return nil, nil, "", "", false
	}
	switch kind {
	case "AlertmanagerConfig":
		return p.AlertmanagerConfig, p.AlertmanagerConfigNamespace, "alertmanagerConfigSelector", "alertmanagerConfigNamespaceSelector", true
	case "ServiceMonitor":
		return p.ServiceMonitor, p.ServiceMonitorNamespace, "serviceMonitorSelector", "serviceMonitorNamespaceSelector", true
	case "PodMonitor":
		return p.PodMonitor, p.PodMonitorNamespace, "podMonitorSelector", "podMonitorNamespaceSelector", true
	case "Probe":
		return p.Probe, p.ProbeNamespace, "probeSelector", "probeNamespaceSelector", true
	case "ScrapeConfig":
		return p.ScrapeConfig, p.ScrapeConfigNamespace, "scrapeConfigSelector", "scrapeConfigNamespaceSelector", true
	case "PrometheusRule":
		if p.Kind == KindPrometheusAgent {
			return nil, nil, "", "", false
		}
		return p.Rule, p.RuleNamespace, "ruleSelector", "ruleNamespaceSelector", true
	}
	return nil, nil, "", "", false
}

// KindPrometheusAgent marks the selectors of a PrometheusAgent, and
// KindAlertmanager those of an Alertmanager.
const (
	KindPrometheusAgent = "PrometheusAgent"
	KindAlertmanager    = "Alertmanager"
)

// HasLoaders reports whether proms holds anything that loads objects of
// kind (a Prometheus for a monitor, an Alertmanager for an
// AlertmanagerConfig), so that "loaded by none" means something.
func HasLoaders(proms []PrometheusSelectors, kind string) bool {
	return slices.ContainsFunc(proms, func(p PrometheusSelectors) bool {
		_, _, _, _, ok := p.selectorsFor(kind)
		return ok
	})
}

// LoaderNoun is what loads objects of kind: Alertmanager for an
// AlertmanagerConfig, else Prometheus.
func LoaderNoun(kind string) string {
	if kind == "AlertmanagerConfig" {
		return KindAlertmanager
	}
	return "Prometheus"
}

// who names the loader in messages.
func (p PrometheusSelectors) who() string {
	kind := p.Kind
	if kind == "" {
		kind = "Prometheus"
	}
	return fmt.Sprintf("%s %s/%s", kind, p.Namespace, p.Name)
}

// WhyNotSelected explains, for the Prometheus nearest to loading obj (the
// fewest unmet requirements), exactly what keeps it from loading it: the
// labels its selector requires and the object lacks or has otherwise, and
// the namespace it does not reach. "" when some Prometheus loads obj or
// there is none to compare with.
func WhyNotSelected(proms []PrometheusSelectors, obj Object, ns Namespace) string {
	if len(proms) == 0 || len(SelectingPrometheuses(proms, obj, ns)) > 0 {
		return ""
	}
	best, bestN := "", -1
	// Ties go to the first by namespace/name, so the message is stable.
	sorted := slices.SortedFunc(slices.Values(proms), func(a, b PrometheusSelectors) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	for _, p := range sorted {
		sel, nsSel, selField, nsField, ok := p.selectorsFor(obj.Kind)
		if !ok {
			continue
		}
		var why []string
		who := p.who()
		if sel == nil {
			why = append(why, fmt.Sprintf("%s selects no %ss (%s is not set)", who, obj.Kind, selField))
		} else {
			why = append(why, unmet(sel, obj.Labels, fmt.Sprintf("%s selects %ss with", who, obj.Kind), "this one has")...)
		}
		switch {
		case nsSel == nil && obj.Namespace != p.Namespace:
			why = append(why, fmt.Sprintf("%s loads %ss from its own namespace %s only (%s is not set)", who, obj.Kind, p.Namespace, nsField))
		case nsSel != nil:
			why = append(why, unmet(nsSel, ns.Labels, fmt.Sprintf("%s's %s requires", who, nsField), fmt.Sprintf("namespace %s has", ns.Name))...)
		}
		if bestN < 0 || len(why) < bestN {
			best, bestN = strings.Join(why, "; "), len(why)
		}
	}
	return best
}

// unmet lists the requirements of sel that l does not meet, each as
// "<lead> k=v; <have> k=w" (or "has no label k").
func unmet(sel *metav1.LabelSelector, l map[string]string, lead, have string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		want := sel.MatchLabels[k]
		got, ok := l[k]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %s=%s; %s no label %s", lead, k, want, have, k))
		case got != want:
			out = append(out, fmt.Sprintf("%s %s=%s; %s %s=%s", lead, k, want, have, k, got))
		}
	}
	for _, e := range sel.MatchExpressions {
		r, err := labels.NewRequirement(e.Key, selectionOperator(e.Operator), e.Values)
		if err != nil {
			out = append(out, fmt.Sprintf("%s an invalid expression on %s: %v", lead, e.Key, err))
			continue
		}
		if !r.Matches(labels.Set(l)) {
			out = append(out, fmt.Sprintf("%s %s; %s %s", lead, r.String(), have, describeLabel(l, e.Key)))
		}
	}
	return out
}

func describeLabel(l map[string]string, k string) string {
	if v, ok := l[k]; ok {
		return k + "=" + v
	}
	return "no label " + k
}

func selectionOperator(op metav1.LabelSelectorOperator) selection.Operator {
	switch op {
	case metav1.LabelSelectorOpIn:
		return selection.In
	case metav1.LabelSelectorOpNotIn:
		return selection.NotIn
	case metav1.LabelSelectorOpExists:
		return selection.Exists
	default:
		return selection.DoesNotExist
	}
}
