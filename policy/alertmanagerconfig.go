package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	amvalidationv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/alertmanager/validation/v1alpha1"
	amvalidationv1beta1 "github.com/prometheus-operator/prometheus-operator/pkg/alertmanager/validation/v1beta1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	monv1beta1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1beta1"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
)

// The AlertmanagerConfig gate's check (the Check of its Findings, and a
// metric label).
const CheckAlertmanagerConfig = "alertmanager-config"

// The AlertmanagerConfig gate judges an AlertmanagerConfig, v1alpha1 or
// v1beta1, with the Prometheus Operator's own validation of that version
// (pkg/alertmanager/validation/v1alpha1 and v1beta1 at the pinned operator
// release), which its admission webhook runs and which its Alertmanager
// controller runs again before it drops an invalid AlertmanagerConfig from
// the generated configuration. The verdict is the operator's on the whole
// object; the operator stops at the first problem, so to name every one the
// gate also runs it on each receiver and each time interval alone, and on
// the route with every receiver and interval name declared, each finding at
// its field path.

// AlertmanagerConfigGateMode is the effective mode of the AlertmanagerConfig
// gate in ns.
func (p *Policy) AlertmanagerConfigGateMode(ns Namespace) Mode {
	return effectiveMode(p.alertmanagerConfigs.mode, ns)
}

// CheckAlertmanagerConfig runs the gate on an AlertmanagerConfig as the API
// server sends it (JSON, in the version of the request), and warns about
// the Secrets it references that cs.Secrets does not hold.
func (p *Policy) CheckAlertmanagerConfig(raw []byte, ns Namespace, cs ClusterState) (GateResult, error) {
	// One generic decode gives the version, the name and the route tree:
	// its bounds and its matchers, for either version.
	var head struct {
		APIVersion string `json:"apiVersion"`
		Metadata   struct{ Name, Namespace string }
		Spec       struct {
			Route any `json:"route"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return GateResult{}, err
	}
	rep := Report{Mode: p.AlertmanagerConfigGateMode(ns)}
	tree := walkRouteTree(head.Spec.Route)
	if f, ok := tree.bounds(); !ok {
		// Judging it would outrun the API server's timeout: say so, and
		// nothing else.
		rep.Findings = []Finding{f}
		return GateResult{Name: head.Metadata.Name, Namespace: head.Metadata.Namespace, Report: rep}, nil
	}
	var res GateResult
	switch head.APIVersion {
	case monv1beta1.SchemeGroupVersion.String():
		amc := &monv1beta1.AlertmanagerConfig{}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, amc); err != nil {
			return GateResult{}, err
		}
		res = GateResult{Name: amc.Name, Namespace: amc.Namespace}
		rep.Findings = amcFindings(amcParts[monv1beta1.Receiver, monv1beta1.TimeInterval]{
			receivers: amc.Spec.Receivers, intervals: amc.Spec.TimeIntervals, intervalsField: "timeIntervals",
			receiverName: func(r monv1beta1.Receiver) string { return r.Name },
			intervalName: func(t monv1beta1.TimeInterval) string { return t.Name },
			receiver:     func(n string) monv1beta1.Receiver { return monv1beta1.Receiver{Name: n} },
			interval:     func(n string) monv1beta1.TimeInterval { return monv1beta1.TimeInterval{Name: n} },
			validate: func(rs []monv1beta1.Receiver, ts []monv1beta1.TimeInterval, withRoute bool) error {
				c := &monv1beta1.AlertmanagerConfig{Spec: monv1beta1.AlertmanagerConfigSpec{Receivers: rs, TimeIntervals: ts}}
				if withRoute {
					c.Spec.Route = amc.Spec.Route
				}
				return amvalidationv1beta1.ValidateAlertmanagerConfig(c)
			},
			matchers: tree.matchers,
		})
		rep.Checked = len(amc.Spec.Receivers)
		rep.Findings = append(rep.Findings, secretWarnings("AlertmanagerConfig", ns.Name, amc.Spec, cs.Secrets)...)
	case monv1alpha1.SchemeGroupVersion.String():
		amc := &monv1alpha1.AlertmanagerConfig{}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, amc); err != nil {
			return GateResult{}, err
		}
		res = GateResult{Name: amc.Name, Namespace: amc.Namespace}
		rep.Findings = amcFindings(amcParts[monv1alpha1.Receiver, monv1alpha1.MuteTimeInterval]{
			receivers: amc.Spec.Receivers, intervals: amc.Spec.MuteTimeIntervals, intervalsField: "muteTimeIntervals",
			receiverName: func(r monv1alpha1.Receiver) string { return r.Name },
			intervalName: func(t monv1alpha1.MuteTimeInterval) string { return t.Name },
			receiver:     func(n string) monv1alpha1.Receiver { return monv1alpha1.Receiver{Name: n} },
			interval:     func(n string) monv1alpha1.MuteTimeInterval { return monv1alpha1.MuteTimeInterval{Name: n} },
			validate: func(rs []monv1alpha1.Receiver, ts []monv1alpha1.MuteTimeInterval, withRoute bool) error {
				c := &monv1alpha1.AlertmanagerConfig{Spec: monv1alpha1.AlertmanagerConfigSpec{Receivers: rs, MuteTimeIntervals: ts}}
				if withRoute {
					c.Spec.Route = amc.Spec.Route
				}
				return amvalidationv1alpha1.ValidateAlertmanagerConfig(c)
			},
			matchers: tree.matchers,
		})
		rep.Checked = len(amc.Spec.Receivers)
		rep.Findings = append(rep.Findings, secretWarnings("AlertmanagerConfig", ns.Name, amc.Spec, cs.Secrets)...)
	default:
		return GateResult{}, fmt.Errorf("apiVersion %q: the AlertmanagerConfig gate knows %s and %s", head.APIVersion, monv1alpha1.SchemeGroupVersion, monv1beta1.SchemeGroupVersion)
	}
	res.Report = rep
	return res, nil
}

// amcParts is one version's AlertmanagerConfig as the gate takes it apart:
// its receivers, its time intervals (spec.timeIntervals in v1beta1,
// spec.muteTimeIntervals in v1alpha1), and the operator's validation of a
// config made of some of them, with or without the object's route.
type amcParts[R, T any] struct {
	receivers      []R
	intervals      []T
	intervalsField string
	receiverName   func(R) string
	intervalName   func(T) string
	receiver       func(name string) R
	interval       func(name string) T
	validate       func(rs []R, ts []T, withRoute bool) error
	// matchers are the route tree's matchers, each at its field path.
	matchers []routeMatcher
}

// routeMatcher is one matcher of a route, as Alertmanager will read it.
type routeMatcher struct {
	at                     *field.Path
	name, value, matchType string
}

// amMatchTypes are Alertmanager's match types by the CRD's operators.
var amMatchTypes = map[string]amlabels.MatchType{"=": amlabels.MatchEqual, "!=": amlabels.MatchNotEqual, "=~": amlabels.MatchRegexp, "!~": amlabels.MatchNotRegexp}

// matcherFindings denies a regular expression matcher that Alertmanager
// cannot compile. The operator's validation does not look (its
// Matcher.Validate checks the operator and the name): it writes the
// matcher into the generated configuration, which Alertmanager then
// refuses to load, so no team's change reaches it.
func matcherFindings(ms []routeMatcher) []Finding {
	var out []Finding
	for _, m := range ms {
		t, ok := amMatchTypes[m.matchType]
		if !ok || t != amlabels.MatchRegexp && t != amlabels.MatchNotRegexp {
			continue
		}
		if _, err := amlabels.NewMatcher(t, m.name, m.value); err != nil {
			out = append(out, Finding{Check: CheckAlertmanagerConfig, Level: LevelDeny, Err: field.Invalid(m.at.Child("value"), m.value,
				"Alertmanager cannot compile this regular expression ("+err.Error()+"): the operator would write it into the generated configuration, which Alertmanager then refuses to load")})
		}
	}
	return out
}

// pointerRE is a pointer printed with %v.
var pointerRE = regexp.MustCompile(`0x[0-9a-f]{6,}`)

// routePathRE is the operator's prefix of a child route's error
// ("route[1]: route[0]: receiver \"x\" not found").
var routePathRE = regexp.MustCompile(`^route\[(\d+)\]: `)

// amcFindings is the gate's findings: none when the operator's validation
// admits the whole object, else one per part it refuses.
func amcFindings[R, T any](c amcParts[R, T]) []Finding {
	whole := c.validate(c.receivers, c.intervals, true)
	if whole == nil {
		return matcherFindings(c.matchers)
	}
	var out []Finding
	deny := func(at *field.Path, err error) {
		// Some of the operator's messages print a pointer (a responder as
		// "&{<nil> 0xc000123 <nil> }"): the address says nothing and would
		// change from one request to the next.
		msg := pointerRE.ReplaceAllString(err.Error(), "0x…")
		out = append(out, Finding{Check: CheckAlertmanagerConfig, Level: LevelDeny, Err: field.Invalid(at, field.OmitValueType{}, msg)})
	}
	spec := field.NewPath("spec")
	seen := map[string]int{}
	names := make([]R, 0, len(c.receivers))
	for i, r := range c.receivers {
		at := spec.Child("receivers").Index(i)
		name := c.receiverName(r)
		if j, dup := seen[name]; dup {
			// In the operator's words ("x" receiver is not unique).
			err := c.validate([]R{c.receiver(name), c.receiver(name)}, nil, false)
			deny(at.Child("name"), fmt.Errorf("%w (also spec.receivers[%d])", err, j))
			continue
		}
		seen[name] = i
		names = append(names, c.receiver(name))
		if err := c.validate([]R{r}, nil, false); err != nil {
			deny(at, err)
		}
	}
	intervals := make([]T, 0, len(c.intervals))
	for i, t := range c.intervals {
		intervals = append(intervals, c.interval(c.intervalName(t)))
		if err := c.validate(nil, []T{t}, false); err != nil {
			// Drop the operator's "time interval[0] is invalid: ", which
			// the field path says.
			if inner := errors.Unwrap(err); inner != nil {
				err = inner
			}
			deny(spec.Child(c.intervalsField).Index(i), err)
		}
	}
	if err := c.validate(names, intervals, true); err != nil {
		msg, at := err.Error(), spec.Child("route")
		for m := routePathRE.FindStringSubmatch(msg); m != nil; m = routePathRE.FindStringSubmatch(msg) {
			i, _ := strconv.Atoi(m[1])
			at, msg = at.Child("routes").Index(i), msg[len(m[0]):]
		}
		deny(at, errors.New(msg))
	}
	if len(out) == 0 {
		// The parts pass alone and the whole does not: say what the
		// operator said, at the spec.
		deny(spec, whole)
	}
	return append(out, matcherFindings(c.matchers)...)
}

// The bounds of a route tree the gate judges. The operator's validation
// (and Alertmanager's loading) decodes each route's children again at
// every level, so the cost grows with the square of the depth: 3,000
// levels (84 KB) take seconds, past the API server's webhook timeout.
// Real routing trees are a few levels deep and have at most hundreds of
// routes.
const (
	MaxRouteDepth = 64
	MaxRoutes     = 10000
)

// routeTree is what the gate reads of spec.route before the typed
// decode: its depth, its number of routes and its matchers.
type routeTree struct {
	depth, count int
	matchers     []routeMatcher
}

// walkRouteTree measures a route tree decoded generically (linear in its
// size) and collects its matchers, as Alertmanager reads them: matchType,
// else v1alpha1's older form (regex: true is =~, else =).
func walkRouteTree(route any) routeTree {
	var t routeTree
	var walk func(r any, at *field.Path, d int)
	walk = func(r any, at *field.Path, d int) {
		m, ok := r.(map[string]any)
		if !ok {
			return
		}
		t.count++
		t.depth = max(t.depth, d)
		ms, _ := m["matchers"].([]any)
		for i, x := range ms {
			mm, _ := x.(map[string]any)
			name, _ := mm["name"].(string)
			value, _ := mm["value"].(string)
			typ, _ := mm["matchType"].(string)
			if typ == "" {
				typ = map[bool]string{false: "=", true: "=~"}[mm["regex"] == true]
			}
			t.matchers = append(t.matchers, routeMatcher{at: at.Child("matchers").Index(i), name: name, value: value, matchType: typ})
		}
		kids, _ := m["routes"].([]any)
		for i, k := range kids {
			walk(k, at.Child("routes").Index(i), d+1)
		}
	}
	walk(route, field.NewPath("spec", "route"), 1)
	return t
}

// bounds is the denial of a tree deeper than MaxRouteDepth or with more
// than MaxRoutes routes (ok: within them).
func (t routeTree) bounds() (Finding, bool) {
	at := field.NewPath("spec", "route")
	switch {
	case t.depth > MaxRouteDepth:
		return Finding{Check: CheckAlertmanagerConfig, Level: LevelDeny, Err: field.Invalid(at, field.OmitValueType{}, fmt.Sprintf(
			"the route tree is %d levels deep; promenroll judges at most %d (each level's children are decoded again at every level above, so a deeper tree cannot be checked within the API server's timeout): flatten it", t.depth, MaxRouteDepth))}, false
	case t.count > MaxRoutes:
		return Finding{Check: CheckAlertmanagerConfig, Level: LevelDeny, Err: field.TooMany(at.Child("routes"), t.count, MaxRoutes)}, false
	}
	return Finding{}, true
}
