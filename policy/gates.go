package policy

import (
	"fmt"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
)

// GateResult is a gate's verdict on one object, with the object's name.
type GateResult struct {
	Name      string
	Namespace string
	Report    Report
}

// Noun is what the report counted: rules, or endpoints.
func (r GateResult) Noun(gk schema.GroupKind) string {
	if gk.Kind == "PrometheusRule" {
		return "rules"
	}
	return "endpoints"
}

// ClusterState is what the gates read of the cluster besides the object,
// from caches (nil readers: offline, those checks are skipped).
type ClusterState struct {
	Services ServiceReader
}

// gate decodes one kind's object (JSON, as the API server sends it) and
// runs its check.
type gate func(p *Policy, raw []byte, ns Namespace, cs ClusterState) (GateResult, error)

// gateFor makes the gate of a kind from its typed check.
func gateFor[T any, PT interface {
	*T
	GetName() string
	GetNamespace() string
}](check func(p *Policy, obj PT, size int, ns Namespace, cs ClusterState) Report) gate {
	return func(p *Policy, raw []byte, ns Namespace, cs ClusterState) (GateResult, error) {
		obj := PT(new(T))
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, obj); err != nil {
			return GateResult{}, err
		}
		return GateResult{Name: obj.GetName(), Namespace: obj.GetNamespace(), Report: check(p, obj, len(raw), ns, cs)}, nil
	}
}

const groupMonitoring = "monitoring.coreos.com"

// gates is the one dispatch table of the validating gates, by group and
// kind (shared/STYLE.md 16): the webhook's /validate and `promenroll check`
// both go through it, so a new kind is one entry here.
var gates = map[schema.GroupKind]gate{
	{Group: groupMonitoring, Kind: "PrometheusRule"}: gateFor(func(p *Policy, o *monv1.PrometheusRule, size int, ns Namespace, _ ClusterState) Report {
		return p.CheckPrometheusRule(o, size, ns)
	}),
	{Group: groupMonitoring, Kind: "ServiceMonitor"}: gateFor(func(p *Policy, o *monv1.ServiceMonitor, _ int, ns Namespace, cs ClusterState) Report {
		rep := p.CheckServiceMonitor(o, ns)
		if len(rep.Denials()) == 0 {
			rep.Findings = append(rep.Findings, ServiceMonitorTargetWarnings(o, cs.Services)...)
		}
		return rep
	}),
	{Group: groupMonitoring, Kind: "PodMonitor"}: gateFor(func(p *Policy, o *monv1.PodMonitor, _ int, ns Namespace, _ ClusterState) Report {
		return p.CheckPodMonitor(o, ns)
	}),
	{Group: groupMonitoring, Kind: "Probe"}: gateFor(func(p *Policy, o *monv1.Probe, _ int, ns Namespace, _ ClusterState) Report {
		return p.CheckProbe(o, ns)
	}),
	{Group: groupMonitoring, Kind: "ScrapeConfig"}: gateFor(func(p *Policy, o *monv1alpha1.ScrapeConfig, _ int, ns Namespace, _ ClusterState) Report {
		return p.CheckScrapeConfig(o, ns)
	}),
}

// Gated reports whether a kind has a gate.
func Gated(gk schema.GroupKind) bool { _, ok := gates[gk]; return ok }

// Gate runs the gate of gk on raw (the object as JSON). It fails only when
// gk has no gate or the object cannot be decoded.
func (p *Policy) Gate(gk schema.GroupKind, raw []byte, ns Namespace, cs ClusterState) (GateResult, error) {
	g, ok := gates[gk]
	if !ok {
		return GateResult{}, fmt.Errorf("no gate for %s", gk)
	}
	return g(p, raw, ns, cs)
}
