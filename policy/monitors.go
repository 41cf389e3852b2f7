package policy

import "fmt"

// MonitorsRule names the monitors section in decisions, warnings and metrics.
const MonitorsRule = "monitors"

// MonitorLabels decides which of the policy's monitors.labels a
// ServiceMonitor, PodMonitor or PrometheusRule gets, so that the cluster's
// Prometheus selects it (the classic missing `release:` label of
// kube-prometheus-stack). Add-only, as for enrollment.
func (p *Policy) MonitorLabels(obj Object, ns Namespace) Decision {
	var d Decision
	if _, ok := p.monitors.kinds[obj.Kind]; !ok || len(p.monitors.labels) == 0 {
		d.Reason = fmt.Sprintf("monitors.labels does not apply to %s", obj.Kind)
		return d
	}
	if reason, ok := p.Excluded(ns, obj.Labels); ok {
		d.Reason = reason
		return d
	}
	d.Matched = []string{MonitorsRule}
	mode := effectiveMode(p.monitors.mode, ns)
	src := substitutionSource{name: obj.Name, namespace: obj.Namespace, labels: obj.Labels, namespaceLabels: ns.Labels}
	pl := newPlanner(&d)
	for _, lt := range p.monitors.labels {
		v, why := lt.value.expand(src)
		if why != "" {
			d.Warnings = append(d.Warnings, prefix(mode)+fmt.Sprintf("label %s skipped (%s): %s", lt.key, MonitorsRule, why))
			continue
		}
		pl.plan(LabelChange{Target: MetadataLabels, Key: lt.key, Value: v, Rule: MonitorsRule, Mode: mode}, obj.Labels)
	}
	d.sort()
	return d
}
