package policy

import (
	"fmt"
	"slices"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
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
	switch gk.Kind {
	case "PrometheusRule":
		return "rules"
	case "AlertmanagerConfig":
		return "receivers"
	}
	return "endpoints"
}

// ClusterState is what the gates read of the cluster besides the object,
// from caches (nil readers: offline, those checks are skipped).
type ClusterState struct {
	Services  ServiceReader
	Workloads WorkloadReader
	// Prometheuses are the cluster's Prometheus objects' selectors (none:
	// which Prometheus loads an object is not judged), and its
	// Alertmanagers' (Kind KindAlertmanager).
	Prometheuses []PrometheusSelectors
	// Secrets says which Secrets exist (metadata only; nil: referenced
	// Secrets are not checked).
	Secrets SecretReader
	// Scope, when set, lists the only namespaces whose Services and
	// workloads are known (audit -n): a check that reads others is
	// skipped, and the report says so in Skipped.
	Scope []string
}

// targetChecks adds a valid monitor's target warnings (check) to rep, or,
// when the namespaces its namespaceSelector reaches are not all in
// cs.Scope, says in rep.Skipped that they were not judged.
func (cs ClusterState) targetChecks(rep *Report, kind, what string, sel monv1.NamespaceSelector, own string, check func() []Finding) {
	if len(rep.Denials()) > 0 || rep.Reason != "" {
		return
	}
	names, all := MonitorNamespaces(sel, own)
	if cs.Scope == nil || !all && !slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(cs.Scope, n) }) {
		rep.Findings = append(rep.Findings, check()...)
		return
	}
	reach := "any namespace"
	if !all {
		reach = "namespaces " + strings.Join(names, ", ")
	}
	rep.Skipped = append(rep.Skipped, fmt.Sprintf("target check skipped: this %s selects %s in %s, and only %s were read; scan them too (-A) to check it", kind, what, reach, strings.Join(cs.Scope, ", ")))
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

// CheckUnselected is the check of monitors.unselected denials.
const CheckUnselected = "unselected"

// gates is the one dispatch table of the validating gates, by group and
// kind (shared/STYLE.md 16): the webhook's /validate and `promenroll check`
// both go through it, so a new kind is one entry here.
var gates = map[schema.GroupKind]gate{
	{Group: groupMonitoring, Kind: "AlertmanagerConfig"}: func(p *Policy, raw []byte, ns Namespace, cs ClusterState) (GateResult, error) {
		return p.CheckAlertmanagerConfig(raw, ns, cs)
	},
	{Group: groupMonitoring, Kind: "PrometheusRule"}: gateFor(func(p *Policy, o *monv1.PrometheusRule, size int, ns Namespace, cs ClusterState) Report {
		rep := p.CheckPrometheusRule(o, size, ns)
		rep.Findings = append(rep.Findings, p.unselectedDenial(Object{Kind: "PrometheusRule", Namespace: o.Namespace, Labels: o.Labels}, ns, cs)...)
		if rep.Reason == "" {
			rep.Findings = append(rep.Findings, ruleVersionFindings(o, ns, cs)...)
		}
		return rep
	}),
	{Group: groupMonitoring, Kind: "ServiceMonitor"}: gateFor(func(p *Policy, o *monv1.ServiceMonitor, _ int, ns Namespace, cs ClusterState) Report {
		rep := p.CheckServiceMonitor(o, ns)
		cs.targetChecks(&rep, "ServiceMonitor", "Services", o.Spec.NamespaceSelector, o.Namespace, func() []Finding { return ServiceMonitorTargetWarnings(o, cs.Services) })
		obj := Object{Kind: "ServiceMonitor", Namespace: o.Namespace, Labels: o.Labels}
		var timings []endpointTiming
		var rels []relabelingAt
		for i, ep := range o.Spec.Endpoints {
			at := field.NewPath("spec", "endpoints").Index(i)
			timings = append(timings, endpointTiming{at, ep.Interval, ep.ScrapeTimeout})
			rels = append(append(rels, relabelingsAt(at.Child("relabelings"), ep.RelabelConfigs)...), relabelingsAt(at.Child("metricRelabelings"), ep.MetricRelabelConfigs)...)
		}
		rep.Findings = append(rep.Findings, timeoutAgainstLoaders(obj, ns, cs, timings)...)
		rep.Findings = append(rep.Findings, relabelVersionFindings(obj, ns, cs, rels)...)
		rep.Findings = append(rep.Findings, specVersionFindings(obj, ns, cs, &o.Spec)...)
		rep.Findings = append(rep.Findings, p.unselectedDenial(obj, ns, cs)...)
		return rep
	}),
	{Group: groupMonitoring, Kind: "PodMonitor"}: gateFor(func(p *Policy, o *monv1.PodMonitor, _ int, ns Namespace, cs ClusterState) Report {
		rep := p.CheckPodMonitor(o, ns)
		cs.targetChecks(&rep, "PodMonitor", "pods", o.Spec.NamespaceSelector, o.Namespace, func() []Finding { return PodMonitorTargetWarnings(o, cs.Workloads) })
		obj := Object{Kind: "PodMonitor", Namespace: o.Namespace, Labels: o.Labels}
		var timings []endpointTiming
		var rels []relabelingAt
		for i, ep := range o.Spec.PodMetricsEndpoints {
			at := field.NewPath("spec", "podMetricsEndpoints").Index(i)
			timings = append(timings, endpointTiming{at, ep.Interval, ep.ScrapeTimeout})
			rels = append(append(rels, relabelingsAt(at.Child("relabelings"), ep.RelabelConfigs)...), relabelingsAt(at.Child("metricRelabelings"), ep.MetricRelabelConfigs)...)
		}
		rep.Findings = append(rep.Findings, timeoutAgainstLoaders(obj, ns, cs, timings)...)
		rep.Findings = append(rep.Findings, relabelVersionFindings(obj, ns, cs, rels)...)
		rep.Findings = append(rep.Findings, specVersionFindings(obj, ns, cs, &o.Spec)...)
		rep.Findings = append(rep.Findings, p.unselectedDenial(obj, ns, cs)...)
		return rep
	}),
	{Group: groupMonitoring, Kind: "Probe"}: gateFor(func(p *Policy, o *monv1.Probe, _ int, ns Namespace, cs ClusterState) Report {
		rep := p.CheckProbe(o, ns)
		obj := Object{Kind: "Probe", Namespace: o.Namespace, Labels: o.Labels}
		rels := relabelingsAt(field.NewPath("spec", "metricRelabelings"), o.Spec.MetricRelabelConfigs)
		if sc := o.Spec.Targets.StaticConfig; sc != nil {
			rels = append(rels, relabelingsAt(field.NewPath("spec", "targets", "staticConfig", "relabelingConfigs"), sc.RelabelConfigs)...)
		}
		if ing := o.Spec.Targets.Ingress; ing != nil {
			rels = append(rels, relabelingsAt(field.NewPath("spec", "targets", "ingress", "relabelingConfigs"), ing.RelabelConfigs)...)
		}
		rep.Findings = append(rep.Findings, relabelVersionFindings(obj, ns, cs, rels)...)
		rep.Findings = append(rep.Findings, specVersionFindings(obj, ns, cs, &o.Spec)...)
		rep.Findings = append(rep.Findings, p.unselectedDenial(obj, ns, cs)...)
		return rep
	}),
	{Group: groupMonitoring, Kind: "ScrapeConfig"}: gateFor(func(p *Policy, o *monv1alpha1.ScrapeConfig, _ int, ns Namespace, cs ClusterState) Report {
		rep := p.CheckScrapeConfig(o, ns)
		obj := Object{Kind: "ScrapeConfig", Namespace: o.Namespace, Labels: o.Labels}
		rels := append(relabelingsAt(field.NewPath("spec", "relabelings"), o.Spec.RelabelConfigs), relabelingsAt(field.NewPath("spec", "metricRelabelings"), o.Spec.MetricRelabelConfigs)...)
		rep.Findings = append(rep.Findings, relabelVersionFindings(obj, ns, cs, rels)...)
		rep.Findings = append(rep.Findings, specVersionFindings(obj, ns, cs, &o.Spec)...)
		rep.Findings = append(rep.Findings, p.unselectedDenial(obj, ns, cs)...)
		return rep
	}),
}

// unselectedDenial denies, when monitors.unselected is deny, a monitor or
// rule that no Prometheus in cs loads. It sees the object after the
// mutating webhook added monitors.labels, so the labels are final. (At warn
// the mutating webhook says it; off says nothing.)
func (p *Policy) unselectedDenial(obj Object, ns Namespace, cs ClusterState) []Finding {
	if p.monitors.unselected != LevelDeny {
		return nil
	}
	if _, ok := p.monitors.kinds[obj.Kind]; !ok {
		return nil
	}
	if _, excluded := p.Excluded(ns, obj.Labels); excluded {
		return nil
	}
	why := WhyNotSelected(cs.Prometheuses, obj, ns)
	if why == "" {
		return nil
	}
	return []Finding{{Check: CheckUnselected, Level: LevelDeny, Err: field.Invalid(field.NewPath("metadata", "labels"), field.OmitValueType{},
		"no Prometheus will load this "+obj.Kind+": "+why+" (policy monitors.unselected: deny)")}}
}

// UnselectedDenies reports whether the gate of kind denies monitors and
// rules no Prometheus loads (monitors.unselected: deny), so it cannot judge
// without the cluster's Prometheus objects.
func (p *Policy) UnselectedDenies(kind string) bool {
	_, ok := p.monitors.kinds[kind]
	return ok && p.monitors.unselected == LevelDeny
}

// UnselectedWarns reports whether the mutating webhook should warn about a
// monitor or rule no Prometheus loads (monitors.unselected: warn).
func (p *Policy) UnselectedWarns() bool { return p.monitors.unselected == LevelWarn }

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
