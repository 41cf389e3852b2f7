package policy

import (
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// MonitorsRule names the monitors section in decisions, warnings and metrics.
const MonitorsRule = "monitors"

// MonitorLabels decides which of the policy's monitors.labels a
// ServiceMonitor, PodMonitor or PrometheusRule gets, so that the cluster's
// Prometheus selects it (the classic missing `release:` label of
// kube-prometheus-stack), and with monitors.autoSelect the labels that
// Prometheus' live selector requires (proms: the cluster's Prometheus
// objects). Add-only, as for enrollment.
func (p *Policy) MonitorLabels(obj Object, ns Namespace, proms []PrometheusSelectors) Decision {
	var d Decision
	_, auto := p.autoSelectFor(obj.Kind)
	if _, ok := p.monitors.kinds[obj.Kind]; !ok || len(p.monitors.labels) == 0 && auto == "" {
		d.Reason = fmt.Sprintf("neither monitors.labels nor monitors.autoSelect applies to %s", obj.Kind)
		return d
	}
	if reason, ok := p.Excluded(ns, obj.Labels); ok {
		d.Reason = reason
		return d
	}
	d.Matched = []string{MonitorsRule}
	mode := effectiveMode(p.monitors.mode, ns)
	src := substitutionSource{name: obj.Name, namespace: obj.Namespace, labels: obj.Labels, namespaceLabels: ns.Labels}
	pl := newPlanner(&d, obj.Field)
	for _, lt := range p.monitors.labels {
		v, why := lt.value.expand(src)
		if why != "" {
			d.Warnings = append(d.Warnings, prefix(mode)+fmt.Sprintf("label %s skipped (%s): %s", lt.key, MonitorsRule, why))
			continue
		}
		pl.plan(LabelChange{Target: MetadataLabels, Key: lt.key, Value: v, Rule: MonitorsRule, Mode: mode}, obj.Labels)
	}
	if auto != "" {
		p.autoSelect(obj, ns, proms, mode, pl)
	}
	d.sort()
	return d
}

// AutoSelectTarget is monitors.autoSelect's namespace and name ("" when
// unset).
func (p *Policy) AutoSelectTarget() (namespace, name string) {
	return p.monitors.autoSelectNS, p.monitors.autoSelectName
}

// autoSelectFor is the loader whose selectors objects of kind get: the
// Prometheus of monitors.autoSelect, or for an AlertmanagerConfig the
// Alertmanager of monitors.autoSelectAlertmanager.
func (p *Policy) autoSelectFor(kind string) (namespace, name string) {
	if LoaderNoun(kind) == KindAlertmanager {
		return p.monitors.autoSelectAMNS, p.monitors.autoSelectAMName
	}
	return p.monitors.autoSelectNS, p.monitors.autoSelectName
}

// AutoSelectRule names autoSelect in decisions, warnings and metrics.
const AutoSelectRule = "monitors.autoSelect"

// autoSelect plans the labels the chosen Prometheus' selector for obj's
// kind requires: its matchLabels and its In expressions with one value.
// Other expressions are checked, and when labels cannot satisfy them, or
// the namespace is not selected, a warning says exactly what is missing.
// With no such Prometheus in proms (yet) nothing is added or said.
func (p *Policy) autoSelect(obj Object, ns Namespace, proms []PrometheusSelectors, mode Mode, pl *planner) {
	ans, aname := p.autoSelectFor(obj.Kind)
	i := slices.IndexFunc(proms, func(pr PrometheusSelectors) bool {
		_, _, _, _, loads := pr.selectorsFor(obj.Kind)
		return loads && pr.Namespace == ans && pr.Name == aname
	})
	if i < 0 {
		return
	}
	pr := proms[i]
	sel, nsSel, selField, nsField, ok := pr.selectorsFor(obj.Kind)
	if !ok {
		return
	}
	who := pr.who()
	warn := func(format string, args ...any) {
		pl.d.Warnings = append(pl.d.Warnings, prefix(mode)+AutoSelectRule+": "+fmt.Sprintf(format, args...))
	}
	if sel == nil {
		warn("%s selects no %ss (%s is not set): no label can change that", who, obj.Kind, selField)
		return
	}
	plan := func(k, v string) {
		pl.plan(LabelChange{Target: MetadataLabels, Key: k, Value: v, Rule: AutoSelectRule, Mode: mode}, obj.Labels)
	}
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		plan(k, sel.MatchLabels[k])
	}
	after := maps.Clone(obj.Labels)
	if after == nil {
		after = map[string]string{}
	}
	for _, c := range pl.d.Changes {
		if _, set := after[c.Key]; !set {
			after[c.Key] = c.Value
		}
	}
	for _, e := range sel.MatchExpressions {
		if e.Operator == metav1.LabelSelectorOpIn && len(e.Values) == 1 {
			if _, set := after[e.Key]; !set {
				plan(e.Key, e.Values[0])
				after[e.Key] = e.Values[0]
			}
			continue
		}
		r, err := labels.NewRequirement(e.Key, selectionOperator(e.Operator), e.Values)
		if err == nil && !r.Matches(labels.Set(after)) {
			warn("%s's %s requires %s, which adding labels cannot choose; this one has %s", who, selField, r.String(), describeLabel(after, e.Key))
		}
	}
	switch {
	case nsSel == nil && obj.Namespace != pr.Namespace:
		warn("%s loads %ss from its own namespace %s only (%s is not set)", who, obj.Kind, pr.Namespace, nsField)
	case nsSel != nil:
		for _, why := range unmet(nsSel, ns.Labels, fmt.Sprintf("%s's %s requires", who, nsField), fmt.Sprintf("namespace %s has", ns.Name)) {
			warn("%s: label the namespace", why)
		}
	}
}
