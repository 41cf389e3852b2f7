package clusterstate

import (
	"context"
	"fmt"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// The status reads monitors and PrometheusRules from informers trimmed to
// who they are and what they select: a ServiceMonitor's or PodMonitor's
// selector and namespaceSelector, a PrometheusRule's rule names. Their
// endpoints, relabelings and expressions are never cached.

// StatusCacheOptions registers the trimming transforms of the status'
// informers into opts.
func StatusCacheOptions(opts cache.Options) {
	for _, obj := range []client.Object{&monv1.ServiceMonitor{}, &monv1.PodMonitor{}, &monv1.Probe{}, &monv1alpha1.ScrapeConfig{}, &monv1.PrometheusRule{}} {
		opts.ByObject[obj] = cache.ByObject{Transform: trimMonitor}
	}
}

// trimMeta keeps of an object's metadata what the caches' readers use:
// name, namespace, labels, UID and resourceVersion.
func trimMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels, ResourceVersion: m.ResourceVersion, UID: m.UID}
}

// trimMonitor keeps what the status reads of a monitor or rule.
func trimMonitor(obj any) (any, error) {
	switch o := obj.(type) {
	case *monv1.ServiceMonitor:
		return &monv1.ServiceMonitor{ObjectMeta: trimMeta(o.ObjectMeta), Spec: monv1.ServiceMonitorSpec{Selector: o.Spec.Selector, NamespaceSelector: o.Spec.NamespaceSelector}}, nil
	case *monv1.PodMonitor:
		return &monv1.PodMonitor{ObjectMeta: trimMeta(o.ObjectMeta), Spec: monv1.PodMonitorSpec{Selector: o.Spec.Selector, NamespaceSelector: o.Spec.NamespaceSelector}}, nil
	case *monv1.Probe:
		return &monv1.Probe{ObjectMeta: trimMeta(o.ObjectMeta)}, nil
	case *monv1alpha1.ScrapeConfig:
		return &monv1alpha1.ScrapeConfig{ObjectMeta: trimMeta(o.ObjectMeta)}, nil
	case *monv1.PrometheusRule:
		out := &monv1.PrometheusRule{ObjectMeta: trimMeta(o.ObjectMeta)}
		for _, g := range o.Spec.Groups {
			tg := monv1.RuleGroup{Name: g.Name}
			for _, r := range g.Rules {
				tg.Rules = append(tg.Rules, monv1.Rule{Record: r.Record, Alert: r.Alert})
			}
			out.Spec.Groups = append(out.Spec.Groups, tg)
		}
		return out, nil
	}
	return obj, nil
}

// MonitorObjectsFrom lists the monitors of the kinds served (served[kind]).
func MonitorObjectsFrom(ctx context.Context, c client.Reader, served func(kind string) bool, opts ...client.ListOption) ([]policy.MonitorObject, error) {
	var out []policy.MonitorObject
	add := func(kind string, m metav1.ObjectMeta, sel *metav1.LabelSelector, nsSel monv1.NamespaceSelector) {
		out = append(out, policy.MonitorObject{Kind: kind, Namespace: m.Namespace, Name: m.Name, UID: string(m.UID), Labels: m.Labels, Selector: sel, NamespaceSelector: nsSel})
	}
	if served("ServiceMonitor") {
		var l monv1.ServiceMonitorList
		if err := c.List(ctx, &l, opts...); err != nil {
			return nil, fmt.Errorf("list ServiceMonitors: %w", err)
		}
		for i := range l.Items {
			add("ServiceMonitor", l.Items[i].ObjectMeta, &l.Items[i].Spec.Selector, l.Items[i].Spec.NamespaceSelector)
		}
	}
	if served("PodMonitor") {
		var l monv1.PodMonitorList
		if err := c.List(ctx, &l, opts...); err != nil {
			return nil, fmt.Errorf("list PodMonitors: %w", err)
		}
		for i := range l.Items {
			add("PodMonitor", l.Items[i].ObjectMeta, &l.Items[i].Spec.Selector, l.Items[i].Spec.NamespaceSelector)
		}
	}
	if served("Probe") {
		var l monv1.ProbeList
		if err := c.List(ctx, &l, opts...); err != nil {
			return nil, fmt.Errorf("list Probes: %w", err)
		}
		for i := range l.Items {
			add("Probe", l.Items[i].ObjectMeta, nil, monv1.NamespaceSelector{})
		}
	}
	if served("ScrapeConfig") {
		var l monv1alpha1.ScrapeConfigList
		if err := c.List(ctx, &l, opts...); err != nil {
			return nil, fmt.Errorf("list ScrapeConfigs: %w", err)
		}
		for i := range l.Items {
			add("ScrapeConfig", l.Items[i].ObjectMeta, nil, monv1.NamespaceSelector{})
		}
	}
	return out, nil
}

// RuleObjectsFrom lists the PrometheusRules.
func RuleObjectsFrom(ctx context.Context, c client.Reader, opts ...client.ListOption) ([]policy.RuleObject, error) {
	var l monv1.PrometheusRuleList
	if err := c.List(ctx, &l, opts...); err != nil {
		return nil, fmt.Errorf("list PrometheusRules: %w", err)
	}
	out := make([]policy.RuleObject, 0, len(l.Items))
	for i := range l.Items {
		r := &l.Items[i]
		n := 0
		for _, g := range r.Spec.Groups {
			n += len(g.Rules)
		}
		out = append(out, policy.RuleObject{Namespace: r.Namespace, Name: r.Name, UID: string(r.UID), Labels: r.Labels, Rules: n})
	}
	return out, nil
}
