package policy

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Finding is one problem a gate found in a PrometheusRule or a monitor.
type Finding struct {
	// Check names the check (the metric label), e.g. promql.
	Check string
	// Level is deny or warn.
	Level Level
	Err   *field.Error
}

// Report is a gate's verdict on one PrometheusRule or monitor.
type Report struct {
	// Mode is the effective mode: in dry-run nothing is denied.
	Mode Mode
	// Findings in field order: structural problems first per rule.
	Findings []Finding
	// Reason says why the gate did not look, when it did not.
	Reason string
	// Checked counts what was checked: rules, or a monitor's endpoints.
	Checked int
	// Skipped says which checks did not run and why (cluster state that
	// was not read).
	Skipped []string
}

// Denials returns the findings that deny the object (in enforce mode).
func (r Report) Denials() field.ErrorList { return r.errors(LevelDeny) }

// Warnings returns the findings that only warn.
func (r Report) Warnings() field.ErrorList { return r.errors(LevelWarn) }

func (r Report) errors(l Level) field.ErrorList {
	var out field.ErrorList
	for _, f := range r.Findings {
		if f.Level == l {
			out = append(out, f.Err)
		}
	}
	return out
}

// promqlParser mirrors the Prometheus server's defaults (no experimental
// functions), as `promtool check rules` does without --enable-feature.
var promqlParser = parser.NewParser(parser.Options{})

// recordNameRE is the level:metric:operations convention of
// https://prometheus.io/docs/practices/rules/, read as kube-prometheus and
// most rule sets use it: a colon marks a recorded series apart from a raw
// metric, the level may be empty (":node_memory_MemAvailable_bytes:sum") and
// operations may be omitted ("apiserver_request:burnrate1h") or chained;
// no segment after the level may be empty.
var recordNameRE = regexp.MustCompile(`^[a-zA-Z0-9_]*(:[a-zA-Z0-9_]+)+$`)

// CheckPrometheusRule validates a PrometheusRule the way Prometheus will
// when it loads the rule file the operator generates from it, then applies
// the policy's conventions. size is the object's size in bytes as received.
func (p *Policy) CheckPrometheusRule(pr *monv1.PrometheusRule, size int, ns Namespace) Report {
	rep := Report{Mode: p.RulesMode(ns)}
	// The enrollment opt-out label does not apply: it must not be a way
	// around the gate.
	if reason, ok := p.ExcludedNamespace(ns); ok {
		rep.Reason = reason
		return rep
	}
	s := &p.rules
	add := func(check string, l Level, e *field.Error) {
		if l != LevelOff {
			rep.Findings = append(rep.Findings, Finding{Check: check, Level: l, Err: e})
		}
	}
	if int64(size) > s.maxBytes {
		add(CheckSize, LevelDeny, withDetail(field.TooLong(field.NewPath("spec"), "", int(s.maxBytes)),
			fmt.Sprintf("the object is %d bytes, over the policy's rules.maxBytes (%d): split its groups over several PrometheusRules", size, s.maxBytes)))
	}

	groupNames := map[string]*field.Path{}
	ruleKeys := map[string]*field.Path{}
	groupsPath := field.NewPath("spec", "groups")
	for i := range pr.Spec.Groups {
		g := &pr.Spec.Groups[i]
		gp := groupsPath.Index(i)
		if g.Name == "" {
			add(CheckGroup, LevelDeny, field.Required(gp.Child("name"), "every rule group needs a name"))
		} else if first, dup := groupNames[g.Name]; dup {
			add(CheckGroup, LevelDeny, withDetail(field.Duplicate(gp.Child("name"), g.Name),
				"group names must be unique within a PrometheusRule (first at "+first.String()+")"))
		} else {
			groupNames[g.Name] = gp.Child("name")
		}
		for _, k := range slices.Sorted(maps.Keys(g.Labels)) {
			if !s.scheme.IsValidLabelName(k) || k == model.MetricNameLabel {
				f := labelNameFinding(gp, k)
				add(f.Check, f.Level, f.Err)
			}
		}
		checkDuration(g.Interval, gp.Child("interval"), add)
		checkDuration(g.QueryOffset, gp.Child("query_offset"), add)
		if g.Limit != nil && *g.Limit < 0 {
			add(CheckGroup, LevelDeny, field.Invalid(gp.Child("limit"), *g.Limit, "must be 0 (no limit) or more"))
		}

		for j := range g.Rules {
			r := &g.Rules[j]
			rp := gp.Child("rules").Index(j)
			rep.Checked++
			rf := rulefmt.Rule{Record: r.Record, Alert: r.Alert, Expr: r.Expr.String(), Labels: r.Labels, Annotations: r.Annotations}
			var forDur model.Duration
			if r.For != nil {
				forDur = parseDuration(string(*r.For), rp.Child("for"), add)
				rf.For = forDur
			}
			if r.KeepFiringFor != nil {
				rf.KeepFiringFor = parseDuration(string(*r.KeepFiringFor), rp.Child("keep_firing_for"), add)
			}
			for _, f := range validateRuleFmt(&rf, s.scheme, promqlParser, rp) {
				add(f.Check, f.Level, f.Err)
			}
			p.checkConventions(g, r, rp, forDur, add)
			if s.lint.DuplicateRules == LevelOff {
				continue
			}
			key := ruleKey(g, r)
			if first, dup := ruleKeys[key]; dup {
				add(CheckDuplicate, s.lint.DuplicateRules, withDetail(field.Duplicate(rp, ruleName(r)),
					fmt.Sprintf("same name and labels as %s: Prometheus evaluates both and produces clashing series", first)))
			} else {
				ruleKeys[key] = rp
			}
		}
	}
	return rep
}

// checkConventions applies rules.require and the naming/for lints.
func (p *Policy) checkConventions(g *monv1.RuleGroup, r *monv1.Rule, rp *field.Path, forDur model.Duration, add func(string, Level, *field.Error)) {
	s := &p.rules
	if r.Record != "" && r.Alert == "" {
		if !recordNameRE.MatchString(r.Record) {
			add(CheckRecordNaming, s.lint.RecordingRuleNaming, field.Invalid(rp.Child("record"), r.Record, "a recording rule name should read level:metric:operations, with colons, so recorded series stand apart from raw metrics (https://prometheus.io/docs/practices/rules/)"))
		}
		return
	}
	if r.Alert == "" {
		return
	}
	label := func(k string) (string, bool) {
		if v, ok := r.Labels[k]; ok {
			return v, true
		}
		v, ok := g.Labels[k]
		return v, ok
	}
	for _, k := range s.require.AlertLabels {
		if v, ok := label(k); !ok || v == "" {
			add(CheckAlertLabels, s.require.Levels.AlertLabels, field.Required(rp.Child("labels").Key(k), fmt.Sprintf("alert %s needs label %s (policy rules.require.alertLabels)", r.Alert, k)))
		}
	}
	for _, k := range s.require.AlertAnnotations {
		if r.Annotations[k] == "" {
			add(CheckAnnotations, s.require.Levels.AlertAnnotations, field.Required(rp.Child("annotations").Key(k), fmt.Sprintf("alert %s needs annotation %s (policy rules.require.alertAnnotations)", r.Alert, k)))
		}
	}
	if len(s.severityValues) > 0 {
		if v, ok := label("severity"); ok {
			if _, allowed := s.severityValues[v]; !allowed {
				add(CheckSeverity, s.require.Levels.SeverityValues, field.NotSupported(rp.Child("labels").Key("severity"), v, s.require.SeverityValues))
			}
		}
	}
	if s.lint.ForTooShort != LevelOff && forDur < s.minFor {
		add(CheckForTooShort, s.lint.ForTooShort, field.Invalid(rp.Child("for"), forDur.String(), fmt.Sprintf("alert %s fires after less than %s (policy rules.lint.minFor): a single bad scrape pages someone", r.Alert, s.minFor)))
	}
}

// withDetail sets the human explanation of a field error.
func withDetail(e *field.Error, detail string) *field.Error {
	e.Detail = detail
	return e
}

func checkDuration(d *monv1.Duration, fld *field.Path, add func(string, Level, *field.Error)) {
	if d != nil {
		parseDuration(string(*d), fld, add)
	}
}

func parseDuration(s string, fld *field.Path, add func(string, Level, *field.Error)) model.Duration {
	d, err := model.ParseDuration(s)
	if err != nil {
		add(CheckDuration, LevelDeny, field.Invalid(fld, s, "not a Prometheus duration (e.g. 30s, 5m, 1h30m)"))
	}
	return d
}

func ruleName(r *monv1.Rule) string {
	if r.Alert != "" {
		return r.Alert
	}
	return r.Record
}

// ruleKey identifies a rule for the duplicate lint: its kind, name and
// labels (including the group's).
func ruleKey(g *monv1.RuleGroup, r *monv1.Rule) string {
	var b strings.Builder
	if r.Alert != "" {
		b.WriteString("alert\x00" + r.Alert)
	} else {
		b.WriteString("record\x00" + r.Record)
	}
	merged := make(map[string]string, len(g.Labels)+len(r.Labels))
	for k, v := range g.Labels {
		merged[k] = v
	}
	for k, v := range r.Labels {
		merged[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(merged)) {
		b.WriteString("\x00" + k + "\x00" + merged[k])
	}
	return b.String()
}

// RulesMode is the effective mode of the rule gate in a namespace.
func (p *Policy) RulesMode(ns Namespace) Mode { return effectiveMode(p.rules.mode, ns) }
