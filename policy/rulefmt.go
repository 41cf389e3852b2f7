package policy

// This file is the one place promenroll calls Prometheus' model/rulefmt.
// rulefmt's API changed shape several times across Prometheus releases; an
// upgrade of github.com/prometheus/prometheus touches this file only.

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"text/template/parse"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	promtemplate "github.com/prometheus/prometheus/template"
	"github.com/prometheus/prometheus/util/features"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Checks reported by the rule gate (the check label of
// promenroll_gate_findings_total).
const (
	CheckStructure    = "structure"
	CheckPromQL       = "promql"
	CheckTemplate     = "template"
	CheckName         = "name"
	CheckDuration     = "duration"
	CheckGroup        = "group"
	CheckSize         = "size"
	CheckAlertLabels  = "require_alert_labels"
	CheckAnnotations  = "require_alert_annotations"
	CheckSeverity     = "severity_values"
	CheckDuplicate    = "duplicate_rules"
	CheckRecordNaming = "recording_rule_naming"
	CheckForTooShort  = "for_too_short"
)

// validateRuleFmt runs Prometheus' own validation of one rule (the checks
// Prometheus applies when it loads a rule file: alert/record exclusivity,
// PromQL, recording-rule restrictions, label and annotation names,
// templates) and turns each problem into a field error under fld.
//
// For an alerting rule, the labels and annotations are checked here rather
// than in rulefmt, with rulefmt's own predicates and the same template
// parse: rulefmt builds a template expander and sets up Prometheus' ~40
// template functions for every value, which was most of its cost after
// PromQL on kube-prometheus' rules. A value without "{{" is plain text and
// cannot fail to parse; the others are parsed as rulefmt parses them (same
// definitions prefix, template name and functions, see parseAlertTemplate).
// The promtool agreement test guards the verdicts.
func validateRuleFmt(r *rulefmt.Rule, scheme model.ValidationScheme, p parser.Parser, fld *field.Path) []Finding {
	var out []Finding
	rf := *r
	if r.Alert != "" && r.Record == "" {
		rf.Labels, rf.Annotations = nil, nil
		for _, k := range sortedKeys(r.Labels) {
			v := r.Labels[k]
			if !scheme.IsValidLabelName(k) || k == model.MetricNameLabel {
				out = append(out, labelNameFinding(fld, k))
			}
			if !model.LabelValue(v).IsValid() {
				out = append(out, labelValueFinding(fld, v))
			}
			if err := parseAlertTemplate(r.Alert, v); err != nil {
				out = append(out, templateFinding(fld.Child("labels").Key(k), err))
			}
		}
		for _, k := range sortedKeys(r.Annotations) {
			if !scheme.IsValidLabelName(k) {
				out = append(out, annotationNameFinding(fld, k))
			}
			if err := parseAlertTemplate(r.Alert, r.Annotations[k]); err != nil {
				out = append(out, templateFinding(fld.Child("annotations").Key(k), err))
			}
		}
	}
	for _, we := range rf.Validate(rulefmt.RuleNode{}, scheme, p) {
		out = append(out, classifyRuleFmtError(&we, r, fld))
	}
	// rulefmt walks maps: order the findings so every verdict reads the same.
	sort.SliceStable(out, func(i, j int) bool { return out[i].Err.Field < out[j].Err.Field })
	return out
}

// alertTemplateDefs is what rulefmt (testTemplateParsing) puts before every
// label and annotation value it parses, so positions in errors match.
const alertTemplateDefs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

// alertTemplateFuncs are the function names an alert template may use:
// every function Prometheus' templates define (from
// template.RegisterFeatures) and text/template's builtins. Parsing only
// checks names, so rulefmt's parse is reproduced without setting up the
// functions (text/template's Funcs) for every value, its main cost.
var alertTemplateFuncs = sync.OnceValue(func() map[string]any {
	reg := features.NewRegistry()
	promtemplate.RegisterFeatures(reg)
	funcs := map[string]any{}
	for name := range reg.Get()[features.TemplatingFunctions] {
		funcs[name] = true
	}
	for _, name := range textTemplateBuiltins {
		funcs[name] = true
	}
	return funcs
})

// textTemplateBuiltins are text/template's predefined functions
// (text/template/funcs.go). TestTextTemplateBuiltins checks that each is
// one, and the promtool agreement test parses all of them.
var textTemplateBuiltins = []string{"and", "call", "html", "index", "slice", "js", "len", "not", "or", "print", "printf", "println", "urlquery", "eq", "ge", "gt", "le", "lt", "ne"}

// parseAlertTemplate parses a label or annotation value of alert as
// Prometheus' rulefmt does when it loads a rule file (text/template's Parse,
// under the same name and after the same definitions).
func parseAlertTemplate(alert, text string) error {
	if !strings.Contains(text, "{{") {
		return nil
	}
	_, err := parse.Parse("__alert_"+alert, alertTemplateDefs+text, "", "", alertTemplateFuncs())
	return err
}

func templateFinding(path *field.Path, err error) Finding {
	return Finding{Check: CheckTemplate, Level: LevelDeny, Err: field.Invalid(path, field.OmitValueType{}, err.Error())}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func labelNameFinding(fld *field.Path, k string) Finding {
	msg := "not a valid label name under the policy's rules.nameValidation scheme"
	if k == model.MetricNameLabel {
		msg = "__name__ is reserved for the metric name"
	}
	return Finding{Check: CheckName, Level: LevelDeny, Err: field.Invalid(fld.Child("labels").Key(k), k, msg)}
}

func labelValueFinding(fld *field.Path, v string) Finding {
	return Finding{Check: CheckName, Level: LevelDeny, Err: field.Invalid(fld.Child("labels"), v, "label value is not valid UTF-8")}
}

func annotationNameFinding(fld *field.Path, k string) Finding {
	return Finding{Check: CheckName, Level: LevelDeny, Err: field.Invalid(fld.Child("annotations").Key(k), k, "not a valid annotation name under the policy's rules.nameValidation scheme")}
}

// classifyRuleFmtError maps a rulefmt error to the field it is about, from
// the message texts of the pinned Prometheus version (see rulefmt.go
// Rule.Validate and testTemplateParsing there).
func classifyRuleFmtError(we *rulefmt.WrappedError, r *rulefmt.Rule, fld *field.Path) Finding {
	err := errors.Unwrap(we)
	if err == nil {
		err = we
	}
	msg := err.Error()
	omit := field.OmitValueType{}
	deny := func(check string, e *field.Error) Finding { return Finding{Check: check, Level: LevelDeny, Err: e} }
	var pe parser.ParseErrors
	switch {
	case errors.As(err, &pe) || strings.HasPrefix(msg, "could not parse expression"):
		return deny(CheckPromQL, field.Invalid(fld.Child("expr"), omit, msg))
	case strings.HasPrefix(msg, "field 'expr' must be set"):
		return deny(CheckStructure, field.Required(fld.Child("expr"), "every rule needs a PromQL expression"))
	case strings.HasPrefix(msg, "only one of 'record' and 'alert'"):
		return deny(CheckStructure, field.Invalid(fld, omit, fmt.Sprintf("both record (%q) and alert (%q) are set: a rule is either a recording or an alerting rule", r.Record, r.Alert)))
	case strings.HasPrefix(msg, "one of 'record' or 'alert'"):
		return deny(CheckStructure, field.Required(fld.Child("alert"), "set alert (an alerting rule) or record (a recording rule)"))
	case strings.HasPrefix(msg, "invalid field 'annotations' in recording rule"):
		return deny(CheckStructure, field.Forbidden(fld.Child("annotations"), "a recording rule has no annotations; move them to an alerting rule"))
	case strings.HasPrefix(msg, "invalid field 'for' in recording rule"):
		return deny(CheckStructure, field.Forbidden(fld.Child("for"), "a recording rule has no 'for'; it is evaluated every interval"))
	case strings.HasPrefix(msg, "invalid field 'keep_firing_for' in recording rule"):
		return deny(CheckStructure, field.Forbidden(fld.Child("keep_firing_for"), "a recording rule has no 'keep_firing_for'"))
	case strings.HasPrefix(msg, "invalid recording rule name"), strings.HasPrefix(msg, "braces present in the recording rule name"):
		return deny(CheckName, field.Invalid(fld.Child("record"), r.Record, msg))
	case strings.HasPrefix(msg, "invalid label name: "):
		return labelNameFinding(fld, strings.TrimPrefix(msg, "invalid label name: "))
	case strings.HasPrefix(msg, "invalid label value: "):
		return labelValueFinding(fld, strings.TrimPrefix(msg, "invalid label value: "))
	case strings.HasPrefix(msg, "invalid annotation name: "):
		return annotationNameFinding(fld, strings.TrimPrefix(msg, "invalid annotation name: "))
	case strings.HasPrefix(msg, "label \""), strings.HasPrefix(msg, "annotation \""):
		kind, rest, _ := strings.Cut(msg, " ")
		var k string
		if _, err := fmt.Sscanf(rest, "%q", &k); err == nil {
			detail := strings.TrimPrefix(strings.TrimPrefix(rest, fmt.Sprintf("%q", k)), ": ")
			return deny(CheckTemplate, field.Invalid(fld.Child(kind+"s").Key(k), omit, detail))
		}
		return deny(CheckTemplate, field.Invalid(fld, omit, msg))
	default:
		return deny(CheckStructure, field.Invalid(fld, omit, msg))
	}
}

// structuralChecks are the checks Prometheus itself applies when it loads a
// rule file; the others are promenroll's conventions.
var structuralChecks = map[string]bool{
	CheckStructure: true, CheckPromQL: true, CheckTemplate: true,
	CheckName: true, CheckDuration: true, CheckGroup: true,
}

// Structural reports whether Prometheus would refuse to load the rule file
// because of this finding (as opposed to a policy convention).
func (f Finding) Structural() bool { return structuralChecks[f.Check] }
