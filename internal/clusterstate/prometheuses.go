package clusterstate

import (
	"context"
	"fmt"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/policy"
)

// PrometheusLister returns the selectors of the cluster's Prometheus objects.
type PrometheusLister interface {
	Prometheuses(ctx context.Context) ([]policy.PrometheusSelectors, error)
}

// cachedPrometheuses lists Prometheus (and, with Agents, PrometheusAgent;
// with Alertmanagers, Alertmanager) objects from the manager's informer
// cache (list/watch).
type cachedPrometheuses struct {
	Cache         client.Reader
	Agents        bool
	Alertmanagers bool
}

// Prometheuses implements PrometheusLister.
func (c cachedPrometheuses) Prometheuses(ctx context.Context) ([]policy.PrometheusSelectors, error) {
	var list monv1.PrometheusList
	if err := c.Cache.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list Prometheuses: %w", err)
	}
	out := PrometheusSelectorsOf(list.Items)
	if c.Agents {
		var agents monv1alpha1.PrometheusAgentList
		if err := c.Cache.List(ctx, &agents); err != nil {
			return nil, fmt.Errorf("list PrometheusAgents: %w", err)
		}
		out = append(out, AgentSelectorsOf(agents.Items)...)
	}
	if c.Alertmanagers {
		var ams monv1.AlertmanagerList
		if err := c.Cache.List(ctx, &ams); err != nil {
			return nil, fmt.Errorf("list Alertmanagers: %w", err)
		}
		out = append(out, AlertmanagerSelectorsOf(ams.Items)...)
	}
	return out, nil
}

// AlertmanagerSelectorsOf extracts what decides which AlertmanagerConfigs
// an Alertmanager loads.
func AlertmanagerSelectorsOf(items []monv1.Alertmanager) []policy.PrometheusSelectors {
	out := make([]policy.PrometheusSelectors, 0, len(items))
	for _, a := range items {
		out = append(out, policy.PrometheusSelectors{Kind: policy.KindAlertmanager, Namespace: a.Namespace, Name: a.Name,
			AlertmanagerConfig: a.Spec.AlertmanagerConfigSelector, AlertmanagerConfigNamespace: a.Spec.AlertmanagerConfigNamespaceSelector, Version: a.Spec.Version})
	}
	return out
}

// ListPrometheuses lists the Prometheus objects (and, with agents, the
// PrometheusAgents) r holds, as the gates and the status read them.
func ListPrometheuses(ctx context.Context, r client.Reader, agents bool) ([]policy.PrometheusSelectors, error) {
	return cachedPrometheuses{Cache: r, Agents: agents}.Prometheuses(ctx)
}

// AgentSelectorsOf extracts what decides selection from PrometheusAgent
// objects: they load ServiceMonitors and PodMonitors, never rules.
func AgentSelectorsOf(items []monv1alpha1.PrometheusAgent) []policy.PrometheusSelectors {
	out := make([]policy.PrometheusSelectors, 0, len(items))
	for _, a := range items {
		out = append(out, policy.PrometheusSelectors{Kind: policy.KindPrometheusAgent, Namespace: a.Namespace, Name: a.Name,
			ServiceMonitor: a.Spec.ServiceMonitorSelector, ServiceMonitorNamespace: a.Spec.ServiceMonitorNamespaceSelector,
			PodMonitor: a.Spec.PodMonitorSelector, PodMonitorNamespace: a.Spec.PodMonitorNamespaceSelector,
			Probe: a.Spec.ProbeSelector, ProbeNamespace: a.Spec.ProbeNamespaceSelector,
			ScrapeConfig: a.Spec.ScrapeConfigSelector, ScrapeConfigNamespace: a.Spec.ScrapeConfigNamespaceSelector,
			ScrapeInterval: string(a.Spec.ScrapeInterval), Version: a.Spec.Version, APIURL: apiURL(&a.Spec.CommonPrometheusFields, "prometheus-agent-operated", a.Namespace)})
	}
	return out
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
			Probe: p.Spec.ProbeSelector, ProbeNamespace: p.Spec.ProbeNamespaceSelector,
			ScrapeConfig: p.Spec.ScrapeConfigSelector, ScrapeConfigNamespace: p.Spec.ScrapeConfigNamespaceSelector,
			ScrapeInterval: string(p.Spec.ScrapeInterval), Version: p.Spec.Version, APIURL: apiURL(&p.Spec.CommonPrometheusFields, "prometheus-operated", p.Namespace)})
	}
	return out
}

// apiURL is where a Prometheus' API answers inside the cluster: the
// operator creates one governing Service per namespace (prometheus-operated,
// prometheus-agent-operated for agents; prometheus-operator
// pkg/prometheus/server/statefulset.go) whose port web is the container's
// 9090, over https when spec.web.tlsConfig is set, under spec.routePrefix.
// The Service selects every Prometheus of the namespace: with several
// there, or with shards, give each one's URL (--prometheus-url).
func apiURL(c *monv1.CommonPrometheusFields, service, namespace string) string {
	return fmt.Sprintf("%s://%s.%s.svc:9090%s", c.PrometheusURIScheme(), service, namespace, strings.TrimSuffix(c.WebRoutePrefix(), "/"))
}
