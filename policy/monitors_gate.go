package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/relabel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The monitor gate's checks (the Check of each Finding, and a metric label).
const (
	CheckRelabel    = "relabel"
	CheckTimeout    = "scrape-timeout"
	CheckSelector   = "selector"
	CheckEndpoints  = "endpoints"
	CheckHTTPConfig = "http-config"
	CheckTargets    = "targets"
)

// The monitor gate judges a ServiceMonitor, PodMonitor, Probe or
// ScrapeConfig with nothing but the object: what the Prometheus Operator
// would reject when it builds the configuration (pkg/prometheus/
// resource_selector.go, checkServiceMonitor and the others, which skip the
// object with only a log line and an event), and what Prometheus would refuse
// to load. Reads: spec.selector, the endpoints' interval, scrapeTimeout,
// relabelings, metricRelabelings and HTTP client settings; a Probe's
// targets; a ScrapeConfig's relabelings and intervals.

// MonitorGateMode is the effective mode of the monitor gate in ns: the
// monitors section's.
func (p *Policy) MonitorGateMode(ns Namespace) Mode { return effectiveMode(p.monitors.mode, ns) }

// monitorGate collects findings for one object.
type monitorGate struct {
	scheme model.ValidationScheme
	rep    Report
}

func (p *Policy) newMonitorGate(ns Namespace) *monitorGate {
	return &monitorGate{scheme: p.rules.scheme, rep: Report{Mode: p.MonitorGateMode(ns)}}
}

func (g *monitorGate) deny(check string, err *field.Error) {
	g.rep.Findings = append(g.rep.Findings, Finding{Check: check, Level: LevelDeny, Err: err})
}

// CheckServiceMonitor runs the monitor gate on a ServiceMonitor.
func (p *Policy) CheckServiceMonitor(sm *monv1.ServiceMonitor, ns Namespace) Report {
	g := p.newMonitorGate(ns)
	spec := field.NewPath("spec")
	g.selector(&sm.Spec.Selector, spec.Child("selector"))
	eps := spec.Child("endpoints")
	if len(sm.Spec.Endpoints) == 0 {
		g.deny(CheckEndpoints, field.Required(eps, "a ServiceMonitor without endpoints yields no target: add one, e.g. {port: metrics}"))
	}
	for i := range sm.Spec.Endpoints {
		ep := &sm.Spec.Endpoints[i]
		g.endpoint(eps.Index(i), ep.Interval, ep.ScrapeTimeout, ep.RelabelConfigs, ep.MetricRelabelConfigs, ep.Validate)
	}
	g.rep.Checked = len(sm.Spec.Endpoints)
	return g.rep
}

// CheckPodMonitor runs the monitor gate on a PodMonitor.
func (p *Policy) CheckPodMonitor(pm *monv1.PodMonitor, ns Namespace) Report {
	g := p.newMonitorGate(ns)
	spec := field.NewPath("spec")
	g.selector(&pm.Spec.Selector, spec.Child("selector"))
	eps := spec.Child("podMetricsEndpoints")
	if len(pm.Spec.PodMetricsEndpoints) == 0 {
		g.deny(CheckEndpoints, field.Required(eps, "a PodMonitor without podMetricsEndpoints yields no target: add one, e.g. {port: metrics}"))
	}
	for i := range pm.Spec.PodMetricsEndpoints {
		ep := &pm.Spec.PodMetricsEndpoints[i]
		g.endpoint(eps.Index(i), ep.Interval, ep.ScrapeTimeout, ep.RelabelConfigs, ep.MetricRelabelConfigs, ep.Validate)
	}
	g.rep.Checked = len(pm.Spec.PodMetricsEndpoints)
	return g.rep
}

// CheckProbe runs the monitor gate on a Probe.
func (p *Policy) CheckProbe(pr *monv1.Probe, ns Namespace) Report {
	g := p.newMonitorGate(ns)
	spec := field.NewPath("spec")
	g.timeout(pr.Spec.Interval, pr.Spec.ScrapeTimeout, spec)
	g.relabelings(pr.Spec.MetricRelabelConfigs, spec.Child("metricRelabelings"))
	targets := spec.Child("targets")
	if err := pr.Spec.Targets.Validate(); err != nil {
		g.deny(CheckTargets, field.Required(targets, err.Error()))
	}
	if sc := pr.Spec.Targets.StaticConfig; sc != nil {
		g.relabelings(sc.RelabelConfigs, targets.Child("staticConfig", "relabelingConfigs"))
	}
	if in := pr.Spec.Targets.Ingress; in != nil {
		g.selector(&in.Selector, targets.Child("ingress", "selector"))
		g.relabelings(in.RelabelConfigs, targets.Child("ingress", "relabelingConfigs"))
	}
	if err := pr.Spec.HTTPConfig.Validate(); err != nil {
		g.deny(CheckHTTPConfig, invalid(spec, err))
	}
	g.rep.Checked = 1
	return g.rep
}

// CheckScrapeConfig runs the monitor gate on a ScrapeConfig.
func (p *Policy) CheckScrapeConfig(sc *monv1alpha1.ScrapeConfig, ns Namespace) Report {
	g := p.newMonitorGate(ns)
	spec := field.NewPath("spec")
	if sc.Spec.ScrapeInterval != nil && sc.Spec.ScrapeTimeout != nil {
		g.timeout(*sc.Spec.ScrapeInterval, *sc.Spec.ScrapeTimeout, spec)
	}
	g.relabelings(sc.Spec.RelabelConfigs, spec.Child("relabelings"))
	g.relabelings(sc.Spec.MetricRelabelConfigs, spec.Child("metricRelabelings"))
	g.rep.Checked = 1
	return g.rep
}

// endpoint checks what ServiceMonitor and PodMonitor endpoints share:
// interval and timeout, both relabel lists, and the API type's own
// Validate of the HTTP client settings.
func (g *monitorGate) endpoint(f *field.Path, interval, timeout monv1.Duration, relabelings, metricRelabelings []monv1.RelabelConfig, validate func() error) {
	g.timeout(interval, timeout, f)
	g.relabelings(relabelings, f.Child("relabelings"))
	g.relabelings(metricRelabelings, f.Child("metricRelabelings"))
	if err := validate(); err != nil {
		g.deny(CheckHTTPConfig, invalid(f, err))
	}
}

// endpointTiming is an endpoint's interval and scrapeTimeout, and its path.
type endpointTiming struct {
	fld               *field.Path
	interval, timeout monv1.Duration
}

// timeoutAgainstLoaders warns about an endpoint that sets scrapeTimeout but
// no interval when the timeout exceeds the scrapeInterval of a Prometheus
// that loads the monitor: that Prometheus' operator rejects the whole
// monitor (pkg/prometheus/resource_selector.go,
// validateScrapeIntervalAndTimeout).
func timeoutAgainstLoaders(obj Object, ns Namespace, cs ClusterState, eps []endpointTiming) []Finding {
	var out []Finding
	for _, ep := range eps {
		if ep.timeout == "" || ep.interval != "" {
			continue
		}
		t, err := model.ParseDuration(string(ep.timeout))
		if err != nil {
			continue
		}
		for _, p := range loaders(cs.Prometheuses, obj, ns) {
			i, err := model.ParseDuration(p.ScrapeInterval)
			if err != nil || p.ScrapeInterval == "" || t <= i {
				continue
			}
			out = append(out, Finding{Check: CheckTimeout, Level: LevelWarn, Err: field.Invalid(ep.fld.Child("scrapeTimeout"), string(ep.timeout),
				fmt.Sprintf("greater than the scrapeInterval %s of %s, which loads this monitor and will reject it: set interval on the endpoint or lower scrapeTimeout", p.ScrapeInterval, p.who()))})
		}
	}
	return out
}

// invalid is an Invalid error whose detail is err and whose value is left
// out: the error is about several fields together.
func invalid(fld *field.Path, err error) *field.Error {
	return field.Invalid(fld, field.OmitValueType{}, err.Error())
}

func (g *monitorGate) selector(sel *metav1.LabelSelector, fld *field.Path) {
	_, err := metav1.LabelSelectorAsSelector(sel)
	if err == nil {
		return
	}
	errs := selectorErrors(sel)
	if len(errs) == 0 {
		errs = []error{err}
	}
	for _, err := range errs {
		g.deny(CheckSelector, invalid(fld, err))
	}
}

// selectorErrors are the requirements of sel that do not parse, each
// judged alone: matchLabels in key order, then matchExpressions in order.
// LabelSelectorAsSelector (the operator's check) stops at the first, in
// map order, so its message alone would name a different key from one
// apply to the next.
func selectorErrors(sel *metav1.LabelSelector) []error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(sel.MatchLabels)) {
		if _, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchLabels: map[string]string{k: sel.MatchLabels[k]}}); err != nil {
			errs = append(errs, err)
		}
	}
	for _, e := range sel.MatchExpressions {
		if _, err := metav1.LabelSelectorAsSelector(&metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{e}}); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// timeout denies a scrapeTimeout longer than the interval when both are set
// (Prometheus refuses such a scrape config; prometheus-operator issue 4485).
// The CRD's pattern has already checked the syntax.
func (g *monitorGate) timeout(interval, timeout monv1.Duration, fld *field.Path) {
	if interval == "" || timeout == "" {
		return
	}
	i, ierr := model.ParseDuration(string(interval))
	t, terr := model.ParseDuration(string(timeout))
	if ierr != nil || terr != nil {
		return
	}
	if time.Duration(t) > time.Duration(i) {
		g.deny(CheckTimeout, field.Invalid(fld.Child("scrapeTimeout"), string(timeout),
			fmt.Sprintf("greater than the interval %s: Prometheus refuses the scrape config; lower scrapeTimeout or raise interval", interval)))
	}
}

// relabelings validates each relabel config with Prometheus' own code, as
// Prometheus does when it loads the configuration the operator writes.
func (g *monitorGate) relabelings(rcs []monv1.RelabelConfig, fld *field.Path) {
	for i, rc := range rcs {
		f := fld.Index(i)
		cfg, ferr := relabelConfig(rc, f)
		if ferr != nil {
			g.deny(CheckRelabel, ferr)
			continue
		}
		if err := cfg.Validate(g.scheme); err != nil {
			g.deny(CheckRelabel, invalid(f, err))
		}
	}
}

// RelabelConfig converts a monitoring API relabel config into Prometheus'
// as prometheus-operator writes it into the configuration
// (pkg/prometheus/promcfg.go, generateRelabelConfig): fields left empty keep
// Prometheus' defaults (an empty regex means "(.*)"), the action is
// lower-cased. The regex goes through relabel.NewRegexp and the action is
// checked, as Prometheus' YAML loading does; Config.Validate is the
// caller's (since Prometheus 3.7 loading no longer calls it).
func RelabelConfig(rc monv1.RelabelConfig) (*relabel.Config, error) {
	c, ferr := relabelConfig(rc, nil)
	if ferr != nil {
		return nil, ferr
	}
	return c, nil
}

func relabelConfig(rc monv1.RelabelConfig, fld *field.Path) (*relabel.Config, *field.Error) {
	c := relabel.DefaultRelabelConfig
	for _, l := range rc.SourceLabels {
		c.SourceLabels = append(c.SourceLabels, model.LabelName(l))
	}
	if rc.Separator != nil {
		c.Separator = *rc.Separator
	}
	c.TargetLabel = rc.TargetLabel
	if rc.Regex != "" {
		re, err := relabel.NewRegexp(rc.Regex)
		if err != nil {
			// Say what is wrong in the user's text, not in the anchored
			// ^(?s:...)$ form relabel compiles.
			if _, plain := regexp.Compile(rc.Regex); plain != nil {
				err = plain
			}
			return nil, field.Invalid(fld.Child("regex"), truncateRunes(rc.Regex, 200),
				"not a valid RE2 regular expression: "+strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
		c.Regex = re
	}
	if rc.Modulus != 0 {
		c.Modulus = uint64(rc.Modulus)
	}
	if rc.Replacement != nil {
		c.Replacement = *rc.Replacement
	}
	if rc.Action != "" {
		c.Action = relabel.Action(strings.ToLower(rc.Action))
	}
	if !slices.Contains(relabelActions, c.Action) {
		return nil, field.NotSupported(fld.Child("action"), rc.Action, relabelActions)
	}
	return &c, nil
}

// relabelActions are the actions Prometheus' Action.UnmarshalYAML accepts.
var relabelActions = []relabel.Action{relabel.Replace, relabel.Keep, relabel.Drop, relabel.HashMod, relabel.LabelMap,
	relabel.LabelDrop, relabel.LabelKeep, relabel.Lowercase, relabel.Uppercase, relabel.KeepEqual, relabel.DropEqual}
