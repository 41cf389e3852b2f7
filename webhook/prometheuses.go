package webhook

import (
	"context"
	"fmt"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// PrometheusLister returns the selectors of the cluster's Prometheus objects.
type PrometheusLister interface {
	Prometheuses(ctx context.Context) ([]policy.PrometheusSelectors, error)
}

// CachedPrometheuses lists Prometheus objects from the manager's informer
// cache (list/watch prometheuses).
type CachedPrometheuses struct {
	Cache client.Reader
}

// Prometheuses implements PrometheusLister.
func (c CachedPrometheuses) Prometheuses(ctx context.Context) ([]policy.PrometheusSelectors, error) {
	var list monv1.PrometheusList
	if err := c.Cache.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list Prometheuses: %w", err)
	}
	return PrometheusSelectorsOf(list.Items), nil
}

// PrometheusSelectorsOf extracts what decides selection from Prometheus
// objects.
func PrometheusSelectorsOf(items []monv1.Prometheus) []policy.PrometheusSelectors {
	out := make([]policy.PrometheusSelectors, 0, len(items))
	for _, p := range items {
		out = append(out, policy.PrometheusSelectors{Namespace: p.Namespace, Name: p.Name,
			ServiceMonitor: p.Spec.ServiceMonitorSelector, ServiceMonitorNamespace: p.Spec.ServiceMonitorNamespaceSelector,
			PodMonitor: p.Spec.PodMonitorSelector, PodMonitorNamespace: p.Spec.PodMonitorNamespaceSelector,
			Rule: p.Spec.RuleSelector, RuleNamespace: p.Spec.RuleNamespaceSelector,
			ScrapeInterval: string(p.Spec.ScrapeInterval)})
	}
	return out
}
