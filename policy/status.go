package policy

// Status: what really happened after admission. For every workload,
// Service, monitor and PrometheusRule, the results join what promenroll
// decides (enrolled or why not), which monitor selects an object, which
// Prometheus loads that monitor or rule, and what that Prometheus says:
// its targets, up or down, and its rules' health. Pure, like the rest of
// the package: the reporter in serve, `promenroll status` and `audit
// --with-prometheus` give it what they read and publish what it returns.

import (
	"cmp"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Outcome is a status result, spelled as OpenReports spells its results.
type Outcome string

// The outcomes. Pass: it works; Warn: it works in part or not yet;
// Fail: it does not, and the message says why; Error: it could not be
// known (a Prometheus did not answer); Skip: nothing asked for it (not
// enrolled on purpose, or selected by no monitor).
const (
	OutcomePass  Outcome = "pass"
	OutcomeWarn  Outcome = "warn"
	OutcomeFail  Outcome = "fail"
	OutcomeError Outcome = "error"
	OutcomeSkip  Outcome = "skip"
)

// The status checks: one result per object and check.
const (
	// CheckScraped: a workload's or Service's targets in the Prometheuses.
	CheckScraped = "scraped"
	// CheckMonitorLoaded: a monitor is loaded and yields targets.
	CheckMonitorLoaded = "monitor-loaded"
	// CheckRulesEvaluate: a PrometheusRule is loaded and its rules evaluate.
	CheckRulesEvaluate = "rules-evaluate"
)

// The states a result puts its object in: the reasons of the Events that
// mark a change of state.
const (
	StateScraped         = "Scraped"
	StateTargetsDown     = "TargetsDown"
	StateNotScraped      = "NotScraped"
	StateNotEnrolled     = "NotEnrolled"
	StateMonitorLoaded   = "MonitorLoaded"
	StateMonitorNoTarget = "MonitorWithoutTargets"
	StateNotLoaded       = "NotLoaded"
	StateRulesEvaluating = "RulesEvaluating"
	StateRulesFailing    = "RuleEvaluationFailing"
	StateUnknown         = "StatusUnknown"
)

// Subject is the object a result is about.
type Subject struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
}

// String is kind/namespace/name.
func (s Subject) String() string { return s.Kind + " " + s.Namespace + "/" + s.Name }

// StatusResult is one check's result for one object.
type StatusResult struct {
	Subject Subject `json:"subject"`
	Check   string  `json:"check"`
	Outcome Outcome `json:"result"`
	// State names the object's state for Events (StateScraped, ...).
	State string `json:"state"`
	// Message says what happened, or the first broken link and what to do.
	Message string `json:"message"`
	// Properties hold the details a person follows up on: the Prometheus,
	// the scrape pool, a target's URL and last error.
	Properties map[string]string `json:"properties,omitempty"`
	// Targets are the object's active targets (at most MaxListedTargets),
	// for `promenroll status`.
	Targets []TargetStatus `json:"targets,omitempty"`
}

// TargetStatus is one active target of an object, in one Prometheus.
type TargetStatus struct {
	Prometheus string `json:"prometheus"`
	Pool       string `json:"pool"`
	URL        string `json:"url"`
	Health     string `json:"health"`
	LastError  string `json:"lastError,omitempty"`
}

// MaxListedTargets bounds StatusResult.Targets.
const MaxListedTargets = 20

// ScrapeTarget is a target of a Prometheus (/api/v1/targets), active or
// dropped, with only the discovered labels the status reads.
type ScrapeTarget struct {
	// Pool is the scrape pool: the operator names it after the monitor,
	// e.g. podMonitor/<namespace>/<name>/<endpoint index>.
	Pool string
	// URL, Health (up, down, unknown) and LastError: active targets only.
	URL, Health, LastError string
	// From the discovered labels (__meta_kubernetes_*): the pod's
	// namespace, name, controller and pod-template-hash, the Service of an
	// endpoint, and the port.
	Namespace, Pod, ControllerKind, ControllerName, TemplateHash, Service, Port string
}

// owner is the pod owner the controller labels name: a ReplicaSet made by
// a Deployment is named <deployment>-<pod-template-hash>.
func (t ScrapeTarget) owner() (kind, name string) {
	if t.ControllerKind == "ReplicaSet" && t.TemplateHash != "" {
		if d, ok := strings.CutSuffix(t.ControllerName, "-"+t.TemplateHash); ok {
			return "Deployment", d
		}
	}
	return t.ControllerKind, t.ControllerName
}

// RuleGroupStatus is a rule group a Prometheus loaded (/api/v1/rules).
type RuleGroupStatus struct {
	// File is the rule file; the operator names it
	// <namespace>-<name>-<uid>.yaml after the PrometheusRule
	// (prometheus-operator pkg/operator/rules.go).
	File, Name string
	Rules      []RuleHealth
}

// RuleHealth is one rule's evaluation state.
type RuleHealth struct {
	Name, Health, LastError string
}

// PrometheusState is what one Prometheus (or PrometheusAgent) said.
type PrometheusState struct {
	// Err says why it could not be asked ("" when it answered).
	Err             string
	Active, Dropped []ScrapeTarget
	// Groups: nil for an agent, which evaluates no rules.
	Groups []RuleGroupStatus
}

// MonitorObject is what the status reads of a ServiceMonitor, PodMonitor,
// Probe or ScrapeConfig: who it is, and for the first two what it selects.
type MonitorObject struct {
	Kind, Namespace, Name, UID string
	Labels                     map[string]string
	Selector                   *metav1.LabelSelector
	NamespaceSelector          monv1.NamespaceSelector
}

// RuleObject is what the status reads of a PrometheusRule.
type RuleObject struct {
	Namespace, Name, UID string
	Labels               map[string]string
	// Rules counts the rules it holds.
	Rules int
}

// StatusInput is everything the status joins.
type StatusInput struct {
	// Namespace gives a namespace's labels (enrollment and selection
	// read them).
	Namespace func(name string) Namespace
	// Workloads (pod owners) and Services, as enrollment reads them.
	Workloads, Services []Object
	Monitors            []MonitorObject
	Rules               []RuleObject
	Prometheuses        []PrometheusSelectors
	// States are keyed by namespace/name; a loader missing here was not
	// asked (the results say so).
	States map[string]PrometheusState
}

// Status returns one result per workload and Service (CheckScraped), per
// monitor (CheckMonitorLoaded) and per PrometheusRule (CheckRulesEvaluate),
// in input order.
func (p *Policy) Status(in StatusInput) []StatusResult {
	ix := indexTargets(in.States)
	ix.monitors = compileStatusMonitors(in)
	out := make([]StatusResult, 0, len(in.Workloads)+len(in.Services)+len(in.Monitors)+len(in.Rules))
	for _, w := range in.Workloads {
		out = append(out, p.scraped(in, ix, w))
	}
	for _, s := range in.Services {
		out = append(out, p.scraped(in, ix, s))
	}
	for _, m := range in.Monitors {
		out = append(out, monitorLoaded(in, ix, m))
	}
	for _, r := range in.Rules {
		out = append(out, rulesEvaluate(in, r))
	}
	return out
}

// seen is a target as found in one Prometheus.
type seen struct {
	prometheus string
	t          *ScrapeTarget
}

// targetIndex finds a cycle's targets by what owns them.
type targetIndex struct {
	active, dropped map[string][]seen // by owner key
	byPool          map[string][]seen // active, by the pool's monitor prefix
	droppedPool     map[string]int    // dropped, counted by monitor prefix
	// podScraped: namespace/pod scraped by a podMonitor pool.
	podScraped map[string]seen
	// monitors: the PodMonitors and ServiceMonitors, their selectors
	// compiled and loaders found once per cycle.
	monitors []compiledMonitor
}

// compiledMonitor is a PodMonitor or ServiceMonitor ready to match.
type compiledMonitor struct {
	m          MonitorObject
	sel        labels.Selector // nil: it selects nothing
	namespaces []string
	all        bool
	loaders    []string
	why        string // why no Prometheus loads it
	pool       string // its pools' prefix, as monitorOfPool gives it
}

func compileStatusMonitors(in StatusInput) []compiledMonitor {
	var out []compiledMonitor
	for _, m := range in.Monitors {
		if m.Kind != "PodMonitor" && m.Kind != "ServiceMonitor" || m.Selector == nil {
			continue
		}
		cm := compiledMonitor{m: m, pool: monitorPoolPrefix[m.Kind] + "/" + m.Namespace + "/" + m.Name}
		if sel, err := metav1.LabelSelectorAsSelector(m.Selector); err == nil {
			cm.sel = sel
		}
		cm.namespaces, cm.all = MonitorNamespaces(m.NamespaceSelector, m.Namespace)
		obj, ns := Object{Kind: m.Kind, Namespace: m.Namespace, Name: m.Name, Labels: m.Labels}, in.Namespace(m.Namespace)
		if cm.loaders = SelectingPrometheuses(in.Prometheuses, obj, ns); len(cm.loaders) == 0 {
			cm.why = cmp.Or(WhyNotSelected(in.Prometheuses, obj, ns), "there is no Prometheus")
		}
		out = append(out, cm)
	}
	return out
}

func ownerKey(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// monitorOfPool is the monitor a pool is named after, as kind/ns/name
// (operator: serviceMonitor/<ns>/<name>/<i>, podMonitor/<ns>/<name>/<i>,
// probe/<ns>/<name>, scrapeConfig/<ns>/<name>); "" for other pools.
func monitorOfPool(pool string) string {
	parts := strings.SplitN(pool, "/", 4)
	if len(parts) < 3 {
		return ""
	}
	switch parts[0] {
	case "serviceMonitor", "podMonitor", "probe", "scrapeConfig":
		return parts[0] + "/" + parts[1] + "/" + parts[2]
	}
	return ""
}

func indexTargets(states map[string]PrometheusState) targetIndex {
	ix := targetIndex{active: map[string][]seen{}, dropped: map[string][]seen{}, byPool: map[string][]seen{}, droppedPool: map[string]int{}, podScraped: map[string]seen{}}
	for _, prom := range slices.Sorted(maps.Keys(states)) {
		st := states[prom]
		listed := map[string]bool{}
		for i := range st.Active {
			t := &st.Active[i]
			// Prometheus lists a target once per pool; be sure.
			if k := t.Pool + " " + t.URL; listed[k] {
				continue
			} else {
				listed[k] = true
			}
			s := seen{prom, t}
			ix.byPool[monitorOfPool(t.Pool)] = append(ix.byPool[monitorOfPool(t.Pool)], s)
			for _, k := range ownerKeys(t) {
				ix.active[k] = append(ix.active[k], s)
			}
			if t.Pod != "" && strings.HasPrefix(t.Pool, "podMonitor/") {
				ix.podScraped[t.Namespace+"/"+t.Pod] = s
			}
		}
		for i := range st.Dropped {
			t := &st.Dropped[i]
			ix.droppedPool[monitorOfPool(t.Pool)]++
			for _, k := range ownerKeys(t) {
				ix.dropped[k] = append(ix.dropped[k], seen{prom, t})
			}
		}
	}
	return ix
}

// ownerKeys are the objects a target is of: its pod's owner, and for a
// ServiceMonitor's endpoint its Service.
func ownerKeys(t *ScrapeTarget) []string {
	var keys []string
	if kind, name := t.owner(); kind != "" {
		keys = append(keys, ownerKey(kind, t.Namespace, name))
	}
	if t.Service != "" && strings.HasPrefix(t.Pool, "serviceMonitor/") {
		keys = append(keys, ownerKey("Service", t.Namespace, t.Service))
	}
	return keys
}

// scraped is CheckScraped for a workload or a Service: its targets, or
// the first broken link of the chain policy → monitor → Prometheus →
// target.
func (p *Policy) scraped(in StatusInput, ix targetIndex, obj Object) StatusResult {
	res := StatusResult{Subject: Subject{Kind: obj.Kind, Namespace: obj.Namespace, Name: obj.Name}, Check: CheckScraped, Properties: map[string]string{}}
	ns := in.Namespace(obj.Namespace)
	d := p.Enroll(EnrollRequest{Operation: Create, Object: obj, Namespace: ns})
	enrolled, enrollment := enrollmentOf(obj, d)
	res.Properties["enrollment"] = enrollment

	monitors := selectingMonitors(ix.monitors, obj)
	if len(monitors) > 0 {
		res.Properties["monitors"] = strings.Join(monitorNames(monitors), ", ")
	}
	key := ownerKey(obj.Kind, obj.Namespace, obj.Name)
	if active := ix.active[key]; len(active) > 0 {
		return targetsResult(res, active)
	}
	fail := func(o Outcome, state, msg string) StatusResult {
		res.Outcome, res.State, res.Message = o, state, msg
		return res
	}
	// Selected by which monitors, loaded by which Prometheuses.
	var loaded, unloaded, proms []string
	for _, cm := range monitors {
		m := cm.m
		if len(cm.loaders) == 0 {
			unloaded = append(unloaded, fmt.Sprintf("%s %s/%s (%s)", m.Kind, m.Namespace, m.Name, cm.why))
			continue
		}
		loaded = append(loaded, fmt.Sprintf("%s %s/%s", m.Kind, m.Namespace, m.Name))
		proms = append(proms, cm.loaders...)
	}
	slices.Sort(proms)
	asked, unreachable, _ := partition(in.States, slices.Compact(proms))
	if obj.Kind == "Service" && len(monitors) > 0 {
		if s, ok := podWins(ix, key); ok {
			res.Properties["prometheus"], res.Properties["pool"] = s.prometheus, s.t.Pool
			return fail(OutcomeSkip, StateScraped, fmt.Sprintf("not scraped as a Service: its endpoints are pods that %s already scrapes in Prometheus %s (the pod wins, so nothing is scraped twice)", s.t.Pool, s.prometheus))
		}
	}
	// The operator turns a monitor's selector into relabeling, so every
	// endpoint in its namespaces is discovered and the unselected ones are
	// dropped: only a selecting monitor's drop says something of obj.
	var dropped []seen
	for _, d := range ix.dropped[key] {
		if slices.ContainsFunc(monitors, func(m compiledMonitor) bool { return m.pool == monitorOfPool(d.t.Pool) }) {
			dropped = append(dropped, d)
		}
	}
	if len(dropped) > 0 {
		s := dropped[0]
		res.Properties["prometheus"], res.Properties["pool"] = s.prometheus, s.t.Pool
		why := scrapePortProblem(obj)
		if why == "" {
			why = "its relabeling drops every endpoint of it"
		}
		return fail(OutcomeFail, StateNotScraped, fmt.Sprintf("no target: Prometheus %s discovers %d endpoint(s) of it in %s and drops them: %s", s.prometheus, len(dropped), s.t.Pool, why))
	}
	if len(monitors) == 0 {
		if !enrolled {
			return fail(notEnrolledOutcome(d), StateNotEnrolled, "not scraped: "+enrollment+", and no monitor selects it")
		}
		return fail(OutcomeFail, StateNotScraped, "enrolled, but no monitor selects it: install the enrollment monitors (deploy/base/monitors, or the chart's enrollmentMonitors) or write one")
	}
	if len(loaded) == 0 {
		return fail(OutcomeFail, StateNotScraped, "no target: no Prometheus loads the monitors that select it: "+strings.Join(unloaded, "; "))
	}
	if len(asked) == 0 && len(unreachable) > 0 {
		return fail(OutcomeError, StateUnknown, "unknown: the Prometheus that loads its monitors did not answer: "+strings.Join(unreachable, "; "))
	}
	if len(asked) == 0 {
		return fail(OutcomeSkip, StateUnknown, "unknown: the Prometheus that loads "+strings.Join(loaded, ", ")+" is not reachable from promenroll (give its URL with --prometheus-url)")
	}
	if why := scrapePortProblem(obj); why != "" {
		return fail(OutcomeFail, StateNotScraped, "no target: "+why)
	}
	what := "no pod of it"
	if obj.Kind == "Service" {
		what = "no endpoint of it"
	}
	return fail(OutcomeFail, StateNotScraped, fmt.Sprintf("no target: Prometheus %s (loading %s) discovers %s: are its pods running and ready? (kubectl get pods -n %s)", strings.Join(asked, ", "), strings.Join(loaded, ", "), what, obj.Namespace))
}

func monitorNames(ms []compiledMonitor) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.m.Kind+" "+m.m.Namespace+"/"+m.m.Name)
	}
	return out
}

// notEnrolledOutcome: skip when the object is left alone on purpose
// (excluded, opted out, or no rule asks for it), warn in dry-run, fail
// when the policy would enroll it today but it lacks the labels.
func notEnrolledOutcome(d Decision) Outcome {
	switch {
	case len(d.Enforced()) > 0:
		return OutcomeFail
	case len(d.DryRun()) > 0:
		return OutcomeWarn
	}
	return OutcomeSkip
}

// enrollmentOf says whether obj, as stored, carries what the policy
// enrolls it with, and how to read that.
func enrollmentOf(obj Object, d Decision) (bool, string) {
	if d.Reason != "" {
		return false, "not enrolled: " + d.Reason
	}
	rules := strings.Join(d.Matched, ", ")
	if missing := d.Enforced(); len(missing) > 0 {
		return false, fmt.Sprintf("not enrolled: it lacks %s, which rule %s adds at creation (it was created before promenroll, or while promenroll was unavailable): add them or recreate it", describeChanges(obj, missing), rules)
	}
	if would := d.DryRun(); len(would) > 0 {
		return false, fmt.Sprintf("not enrolled: dry-run: rule %s would add %s", rules, describeChanges(obj, would))
	}
	return true, "enrolled by rule " + rules
}

func describeChanges(obj Object, cs []LabelChange) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s[%s]=%q", obj.Field(c.Target), c.Key, c.Value))
	}
	return strings.Join(parts, ", ")
}

// selectingMonitors are the PodMonitors whose selector matches a pod
// owner's template labels, or the ServiceMonitors whose selector matches a
// Service's labels, in a namespace they reach (operator semantics: an
// empty selector selects everything).
func selectingMonitors(ms []compiledMonitor, obj Object) []compiledMonitor {
	kind, lbls := "PodMonitor", obj.PodTemplateLabels
	if obj.Kind == "Service" {
		kind, lbls = "ServiceMonitor", obj.Labels
	}
	var out []compiledMonitor
	for _, m := range ms {
		if m.m.Kind != kind || m.sel == nil || !m.all && !slices.Contains(m.namespaces, obj.Namespace) {
			continue
		}
		if m.sel.Matches(labels.Set(lbls)) {
			out = append(out, m)
		}
	}
	return out
}

// podWins finds an active pod target of the pods a Service's dropped
// endpoints point at: the enrollment ServiceMonitor drops an endpoint the
// PodMonitor scrapes.
func podWins(ix targetIndex, key string) (seen, bool) {
	for _, d := range ix.dropped[key] {
		if d.t.Pod == "" {
			continue
		}
		if s, ok := ix.podScraped[d.t.Namespace+"/"+d.t.Pod]; ok {
			return s, true
		}
	}
	return seen{}, false
}

// scrapePortProblem says why the enrollment monitors' conventions pick no
// port of obj ("" when they pick one): scraping turned off, an annotation
// that names no declared port, or no port named metrics or http-metrics.
func scrapePortProblem(obj Object) string {
	ann, where := obj.PodTemplateAnnotations, obj.Field(PodTemplateAnnotations)
	if obj.Kind == "Service" {
		ann, where = obj.Annotations, "metadata.annotations"
	}
	if ann[ScrapeAnnotation] == "false" {
		return fmt.Sprintf("%s[%s] is \"false\"", where, ScrapeAnnotation)
	}
	if v, ok := ann[PortAnnotation]; ok {
		if why := portProblem(v); why != "" {
			return fmt.Sprintf("%s[%s]=%q: %s", where, PortAnnotation, v, why)
		}
		if why := undeclaredPort(obj, v); why != "" {
			return fmt.Sprintf("%s[%s]=%q: %s", where, PortAnnotation, v, why)
		}
		return ""
	}
	for _, p := range obj.Ports {
		if slices.Contains(MetricsPortNames, p.Name) {
			return ""
		}
	}
	var declared []string
	for _, p := range obj.Ports {
		declared = append(declared, cmp.Or(p.Name, strconv.Itoa(int(p.Number))))
	}
	if len(declared) == 0 {
		return "it declares no port; name its metrics port \"metrics\" or set " + PortAnnotation
	}
	return fmt.Sprintf("no port is named %s (declared: %s): name the metrics port so, or set %s", strings.Join(MetricsPortNames, " or "), strings.Join(declared, ", "), PortAnnotation)
}

// targetsResult reports the active targets found for an object: pass when
// every one is up, fail when any is down (the first down one named with
// Prometheus' error), warn when none has been scraped yet.
func targetsResult(res StatusResult, ts []seen) StatusResult {
	up, down, unknown, firstDown := healthOf(ts)
	first := ts[0]
	byProm := map[string]int{}
	for _, s := range ts {
		byProm[s.prometheus]++
		if len(res.Targets) < MaxListedTargets {
			res.Targets = append(res.Targets, TargetStatus{Prometheus: s.prometheus, Pool: s.t.Pool, URL: s.t.URL, Health: s.t.Health, LastError: s.t.LastError})
		}
	}
	var where []string
	for _, prom := range slices.Sorted(maps.Keys(byProm)) {
		where = append(where, "Prometheus "+prom)
	}
	res.Properties["prometheus"] = strings.Join(slices.Sorted(maps.Keys(byProm)), ",")
	res.Properties["targets"] = strconv.Itoa(len(ts))
	res.Properties["up"] = strconv.Itoa(up)
	res.Properties["pool"] = first.t.Pool
	res.Properties["url"] = first.t.URL
	switch {
	case down > 0:
		res.Outcome, res.State = OutcomeFail, StateTargetsDown
		res.Properties["url"], res.Properties["lastError"], res.Properties["pool"] = firstDown.t.URL, firstDown.t.LastError, firstDown.t.Pool
		res.Message = fmt.Sprintf("%d of %d targets down in %s: %s: %s", down, len(ts), strings.Join(where, ", "), firstDown.t.URL, cmp.Or(firstDown.t.LastError, "no error given"))
	case up == 0:
		res.Outcome, res.State = OutcomeWarn, StateNotScraped
		res.Message = fmt.Sprintf("%d targets in %s, not scraped yet", len(ts), strings.Join(where, ", "))
	default:
		res.Outcome, res.State = OutcomePass, StateScraped
		res.Message = fmt.Sprintf("%d targets up in %s", up, strings.Join(where, ", "))
		if unknown > 0 {
			res.Message += fmt.Sprintf(" (%d not scraped yet)", unknown)
		}
	}
	return res
}

// healthOf counts targets up, down and not yet scraped, and finds the
// first one down.
func healthOf(ts []seen) (up, down, unknown int, firstDown seen) {
	for _, s := range ts {
		switch s.t.Health {
		case "up":
			up++
		case "down":
			if down == 0 {
				firstDown = s
			}
			down++
		default:
			unknown++
		}
	}
	return up, down, unknown, firstDown
}

// monitorPoolPrefix is the prefix of the operator's pool names for a kind.
var monitorPoolPrefix = map[string]string{"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "Probe": "probe", "ScrapeConfig": "scrapeConfig"}

// monitorLoaded is CheckMonitorLoaded: which Prometheus loads the monitor
// (or why none does), how many targets it yields and how many are up.
func monitorLoaded(in StatusInput, ix targetIndex, m MonitorObject) StatusResult {
	res := StatusResult{Subject: Subject{Kind: m.Kind, Namespace: m.Namespace, Name: m.Name, UID: m.UID}, Check: CheckMonitorLoaded, Properties: map[string]string{}}
	l, ok := askLoaders(in, &res, Object{Kind: m.Kind, Namespace: m.Namespace, Name: m.Name, Labels: m.Labels})
	if !ok {
		return res
	}
	key := monitorPoolPrefix[m.Kind] + "/" + m.Namespace + "/" + m.Name
	ts := ix.byPool[key]
	up, down, _, firstDown := healthOf(ts)
	res.Properties["targets"], res.Properties["up"] = strconv.Itoa(len(ts)), strconv.Itoa(up)
	switch {
	case len(ts) == 0:
		res.Outcome, res.State = OutcomeWarn, StateMonitorNoTarget
		res.Message = fmt.Sprintf("loaded by %s, but yields no target", strings.Join(l.answered, ", "))
		if n := ix.droppedPool[key]; n > 0 {
			res.Message += fmt.Sprintf(": %d discovered endpoints, all dropped by its relabeling", n)
		} else {
			res.Message += ": it selects nothing that runs (check its selector, namespaceSelector and port)"
		}
		res.Message += l.note
	case down > 0:
		res.Outcome, res.State = OutcomeFail, StateTargetsDown
		res.Properties["url"], res.Properties["lastError"] = firstDown.t.URL, firstDown.t.LastError
		res.Message = fmt.Sprintf("loaded by %s: %d of %d targets down: %s: %s%s", strings.Join(l.answered, ", "), down, len(ts), firstDown.t.URL, cmp.Or(firstDown.t.LastError, "no error given"), l.note)
	default:
		res.Outcome, res.State = OutcomePass, StateMonitorLoaded
		res.Message = fmt.Sprintf("loaded by %s: %d targets, %d up%s", strings.Join(l.answered, ", "), len(ts), up, l.note)
	}
	return res
}

// rulesEvaluate is CheckRulesEvaluate: which Prometheus loads the rule
// (or why none does) and, per rule, its health and last error. A rule
// file is the PrometheusRule's when its name is the operator's
// <namespace>-<name>-<uid>.yaml.
func rulesEvaluate(in StatusInput, r RuleObject) StatusResult {
	res := StatusResult{Subject: Subject{Kind: "PrometheusRule", Namespace: r.Namespace, Name: r.Name, UID: r.UID}, Check: CheckRulesEvaluate, Properties: map[string]string{}}
	l, ok := askLoaders(in, &res, Object{Kind: "PrometheusRule", Namespace: r.Namespace, Name: r.Name, Labels: r.Labels})
	if !ok {
		return res
	}
	file := fmt.Sprintf("%s-%s-%s.yaml", r.Namespace, r.Name, r.UID)
	var notLoaded, failing []string
	loadedRules := 0
	for _, prom := range l.answered {
		st := l.states[prom]
		found := false
		for _, g := range st.Groups {
			if path.Base(g.File) != file {
				continue
			}
			found = true
			for _, rule := range g.Rules {
				loadedRules++
				if rule.Health == "err" {
					failing = append(failing, fmt.Sprintf("%s/%s in %s: %s", g.Name, rule.Name, prom, cmp.Or(rule.LastError, "no error given")))
				}
			}
		}
		if !found && r.Rules > 0 {
			notLoaded = append(notLoaded, prom)
		}
	}
	switch {
	case len(failing) > 0:
		res.Outcome, res.State = OutcomeFail, StateRulesFailing
		res.Properties["lastError"] = failing[0]
		res.Message = fmt.Sprintf("%d of %d rules fail at every evaluation: %s", len(failing), loadedRules, strings.Join(failing, "; "))
	case len(notLoaded) > 0:
		res.Outcome, res.State = OutcomeWarn, StateNotLoaded
		res.Message = fmt.Sprintf("selected by %s, but not loaded by %s: the operator has not written its rule file yet (it does within a minute or two), or refused it (see the operator's log)", strings.Join(l.answered, ", "), strings.Join(notLoaded, ", "))
	default:
		res.Outcome, res.State = OutcomePass, StateRulesEvaluating
		res.Message = fmt.Sprintf("loaded by %s: %d rules, all evaluating%s", strings.Join(l.answered, ", "), loadedRules, l.note)
	}
	return res
}

// loadersOf are the Prometheuses that load a monitor or a rule.
type loadersOf struct {
	// answered: those that answered, in order; states holds their answers.
	answered []string
	states   map[string]PrometheusState
	// note names the others: not asked (no URL), or not answering.
	note string
}

// askLoaders starts the result of a monitor or a rule: the Prometheuses
// that load obj, and the states of those that answered. ok is false when
// res is already final: none loads obj (fail, with what the nearest one
// requires), or none of them answered (error) or could be asked (skip).
func askLoaders(in StatusInput, res *StatusResult, obj Object) (l loadersOf, ok bool) {
	ns := in.Namespace(obj.Namespace)
	proms := SelectingPrometheuses(in.Prometheuses, obj, ns)
	if len(proms) == 0 {
		res.Outcome, res.State = OutcomeFail, StateNotLoaded
		res.Message = "loaded by no Prometheus: " + cmp.Or(WhyNotSelected(in.Prometheuses, obj, ns), "the cluster has no Prometheus object")
		return l, false
	}
	res.Properties["prometheus"] = strings.Join(proms, ",")
	answered, errs, unasked := partition(in.States, proms)
	l.answered, l.states = answered, in.States
	if len(errs) > 0 {
		l.note += "; also loaded by " + strings.Join(errs, "; ") + " (did not answer)"
	}
	if len(unasked) > 0 {
		l.note += "; also loaded by " + strings.Join(unasked, ", ") + " (not asked: no URL)"
	}
	if len(l.answered) > 0 {
		return l, true
	}
	res.State = StateUnknown
	if len(errs) > 0 {
		res.Outcome = OutcomeError
		res.Message = fmt.Sprintf("selected by %s, which did not answer: %s", strings.Join(proms, ", "), strings.Join(errs, "; "))
	} else {
		res.Outcome = OutcomeSkip
		res.Message = fmt.Sprintf("selected by %s, which promenroll cannot reach (give its URL with --prometheus-url)", strings.Join(proms, ", "))
	}
	return l, false
}

// partition sorts proms (namespace/name) by what became of asking them:
// answered; did not answer ("namespace/name: why"); not asked (no URL).
func partition(states map[string]PrometheusState, proms []string) (answered, errs, unasked []string) {
	for _, prom := range proms {
		switch st, asked := states[prom]; {
		case !asked:
			unasked = append(unasked, prom)
		case st.Err != "":
			errs = append(errs, prom+": "+st.Err)
		default:
			answered = append(answered, prom)
		}
	}
	return answered, errs, unasked
}
