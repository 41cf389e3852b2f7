package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// DefaultExcludedNamespaces are never touched, whatever the policy says.
var DefaultExcludedNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// DefaultRulesMaxBytes is the default size cap of a PrometheusRule. The
// Prometheus Operator packs rule files into ConfigMaps, whose data is
// limited to 1 MiB in total (etcd's request limit); 512 KiB leaves room for
// the other rule files sharing the ConfigMap.
const DefaultRulesMaxBytes = 512 * 1024

// DefaultMinFor is the threshold of the forTooShort lint.
const DefaultMinFor = "1m"

// EnrollKinds are the built-in kinds enroll rules name, MonitorKinds those
// monitors.labels go to by default, and LabelledKinds those monitors.kinds
// may name: an AlertmanagerConfig gets them only when listed, as the labels
// an Alertmanager selects on are rarely a Prometheus'. A policy's kinds
// section declares more pod owners.
var (
	EnrollKinds   = []string{"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Service"}
	MonitorKinds  = []string{"ServiceMonitor", "PodMonitor", "PrometheusRule", "Probe", "ScrapeConfig"}
	LabelledKinds = append(slices.Clone(MonitorKinds), "AlertmanagerConfig")
)

// Options are facts about the running installation that the policy file
// does not carry.
type Options struct {
	// OwnNamespace is promenroll's namespace, always excluded.
	OwnNamespace string
}

// Policy is a loaded, validated and compiled policy. It is immutable: a
// reload builds a new one. Everything the request path needs (selectors,
// label templates, thresholds) is compiled here, once.
type Policy struct {
	// Source is the document with defaults applied.
	Source File
	// Generation identifies the document's content (sha256 prefix).
	Generation string
	// EnrollmentGeneration identifies what the native policies are
	// compiled from (EnrollmentGeneration's doc): a policy change that
	// leaves it alone needs no new native policies.
	EnrollmentGeneration string

	mode     Mode
	excluded map[string]struct{}
	// declaredTable holds the declared kinds' mutation entries, declared
	// what the webhook configuration needs of them.
	declaredTable map[schema.GroupKind]mutator
	declared      []DeclaredKind
	enroll        []enrollRule
	monitors      monitorsSection
	rules         rulesSection
	// alertmanagerConfigs is the AlertmanagerConfig gate's section.
	alertmanagerConfigs struct{ mode Mode }
}

type enrollRule struct {
	name              string
	kinds             map[string]struct{}
	namespaceSelector labels.Selector
	selector          labels.Selector
	labels            []labelTemplate
	podTemplateLabels []labelTemplate
	// annotations are the scrape annotations (static values).
	annotations []labelTemplate
	mode        Mode
}

type monitorsSection struct {
	// autoSelect is the Prometheus' namespace and name, or empty.
	autoSelectNS, autoSelectName string
	// autoSelectAM is the Alertmanager's, for AlertmanagerConfigs.
	autoSelectAMNS, autoSelectAMName string
	mode                             Mode
	kinds                            map[string]struct{}
	labels                           []labelTemplate
	unselected                       Level
}

type rulesSection struct {
	mode           Mode
	scheme         model.ValidationScheme
	maxBytes       int64
	require        Require
	severityValues map[string]struct{}
	lint           Lint
	minFor         model.Duration
}

// Error is an invalid policy file: every problem, each with its field path
// and, where known, its line.
type Error struct {
	Path     string
	Problems []Problem
}

// Problem is one invalid field of a policy file.
type Problem struct {
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s is invalid (%d problem(s)):", e.Path, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		if p.Line > 0 {
			fmt.Fprintf(&b, "%s:%d: ", e.Path, p.Line)
		}
		if p.Field != "" {
			b.WriteString(p.Field + ": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Load reads and parses the policy file at path.
func Load(path string, opts Options) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return Parse(path, data, opts)
}

var strictFieldRE = regexp.MustCompile(`^(unknown|duplicate) field "(.*)"$`)

// Parse decodes data strictly (unknown and duplicate fields are errors),
// applies defaults, validates and compiles the policy. name is used in
// error messages.
func Parse(name string, data []byte, opts Options) (*Policy, error) {
	perr := &Error{Path: name}
	lines := newLineIndex(data)
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		perr.Problems = append(perr.Problems, Problem{Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")})
		return nil, perr
	}
	var f File
	strict, err := sigsjson.UnmarshalStrict(js, &f, sigsjson.DisallowUnknownFields)
	if err != nil {
		perr.Problems = append(perr.Problems, Problem{Msg: "cannot decode: " + jsonErrorText(err)})
		return nil, perr
	}
	for _, se := range strict {
		p := Problem{Msg: se.Error()}
		if m := strictFieldRE.FindStringSubmatch(se.Error()); m != nil {
			p.Field, p.Msg = m[2], m[1]+" field: check the spelling against the policy reference (docs/policy.md)"
			p.Line = lines.lineOf(p.Field)
		}
		perr.Problems = append(perr.Problems, p)
	}
	if len(perr.Problems) > 0 {
		return nil, perr
	}

	p, errs := compile(f, opts)
	for _, e := range errs {
		perr.Problems = append(perr.Problems, Problem{Field: e.Field, Msg: strings.TrimPrefix(e.Error(), e.Field+": "), Line: lines.lineOf(e.Field)})
	}
	if len(perr.Problems) > 0 {
		return nil, perr
	}
	sum := sha256.Sum256(data)
	p.Generation = hex.EncodeToString(sum[:6])
	if p.EnrollmentGeneration, err = enrollmentGeneration(js); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	return p, nil
}

// EnrollmentSections are the top-level sections the native policies are
// compiled from.
var EnrollmentSections = []string{"mode", "excludeNamespaces", "kinds", "enroll"}

// enrollmentGeneration is the sha256 prefix of the policy document's
// EnrollmentSections (js: the document as JSON), re-encoded as the chart's
// templates encode them (`pick $policy "mode" "excludeNamespaces" "kinds"
// "enroll" | toYaml`, both with sigs.k8s.io/yaml, keys sorted, no final
// newline), so `helm template` can tell offline whether the native
// policies it renders were compiled from its values' policy.
func enrollmentGeneration(js []byte) (string, error) {
	var doc map[string]any
	if err := json.Unmarshal(js, &doc); err != nil {
		return "", err
	}
	picked := map[string]any{}
	for _, k := range EnrollmentSections {
		if v, ok := doc[k]; ok {
			picked[k] = v
		}
	}
	out, err := yaml.Marshal(picked)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(bytes.TrimSuffix(out, []byte("\n")))
	return hex.EncodeToString(sum[:6]), nil
}

func jsonErrorText(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

func compile(f File, opts Options) (*Policy, field.ErrorList) {
	var errs field.ErrorList
	if f.APIVersion != APIVersion {
		errs = append(errs, field.Invalid(field.NewPath("apiVersion"), f.APIVersion, "must be "+APIVersion))
	}
	if f.Kind != Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), f.Kind, "must be "+Kind))
	}
	if f.Mode == "" {
		f.Mode = ModeEnforce
	}
	errs = append(errs, validateMode(f.Mode, field.NewPath("mode"), false)...)

	p := &Policy{mode: f.Mode, excluded: map[string]struct{}{}}
	for _, ns := range DefaultExcludedNamespaces {
		p.excluded[ns] = struct{}{}
	}
	if opts.OwnNamespace != "" {
		p.excluded[opts.OwnNamespace] = struct{}{}
	}
	for i, ns := range f.ExcludeNamespaces {
		for _, m := range validation.IsDNS1123Label(ns) {
			errs = append(errs, field.Invalid(field.NewPath("excludeNamespaces").Index(i), ns, m))
		}
		p.excluded[ns] = struct{}{}
	}

	if f.Enrollment == nil {
		f.Enrollment = &Enrollment{}
	}
	if f.Enrollment.Engine == "" {
		f.Enrollment.Engine = EngineWebhook
	}
	switch fld := field.NewPath("enrollment", "engine"); f.Enrollment.Engine {
	case EngineWebhook:
	case EngineNative:
		if n := len(f.Enroll); n > MaxNativeRules {
			errs = append(errs, field.Invalid(fld, f.Enrollment.Engine, tooManyNativeRules(n)))
		}
	default:
		errs = append(errs, field.NotSupported(fld, f.Enrollment.Engine, []Engine{EngineWebhook, EngineNative}))
	}

	p.declaredTable, p.declared, errs = compileKinds(f.Kinds, errs)
	kinds := p.enrollKinds()
	names := map[string]int{}
	for i, r := range f.Enroll {
		fld := field.NewPath("enroll").Index(i)
		cr, rerrs := compileEnrollRule(r, fld, p.mode, kinds)
		errs = append(errs, rerrs...)
		if j, dup := names[r.Name]; dup && r.Name != "" {
			errs = append(errs, field.Duplicate(fld.Child("name"), fmt.Sprintf("%s (also enroll[%d])", r.Name, j)))
		}
		names[r.Name] = i
		p.enroll = append(p.enroll, cr)
	}

	if f.Monitors == nil {
		f.Monitors = &Monitors{}
	}
	p.monitors, errs = compileMonitors(f.Monitors, p.mode, errs)
	if f.Rules == nil {
		f.Rules = &Rules{}
	}
	p.rules, errs = compileRules(f.Rules, p.mode, errs)
	if f.AlertmanagerConfigs == nil {
		f.AlertmanagerConfigs = &AlertmanagerConfigs{}
	}
	errs = append(errs, validateMode(f.AlertmanagerConfigs.Mode, field.NewPath("alertmanagerConfigs", "mode"), true)...)
	p.alertmanagerConfigs.mode = inherit(f.AlertmanagerConfigs.Mode, p.mode)
	p.Source = f
	return p, errs
}

func validateMode(m Mode, fld *field.Path, allowEmpty bool) field.ErrorList {
	if m == ModeEnforce || m == ModeDryRun || (allowEmpty && m == "") {
		return nil
	}
	return field.ErrorList{field.NotSupported(fld, m, []Mode{ModeEnforce, ModeDryRun})}
}

func inherit(m, parent Mode) Mode {
	if m == "" {
		return parent
	}
	return m
}

// enrollKinds are the names enroll rules can give their kinds: the
// built-in ones, then the declared ones; the value says the kind owns pods.
func (p *Policy) enrollKinds() map[string]bool {
	kinds := builtinEnrollKinds()
	for _, d := range p.declared {
		kinds[d.Name] = true
	}
	return kinds
}

func compileEnrollRule(r EnrollRule, fld *field.Path, parent Mode, kinds map[string]bool) (enrollRule, field.ErrorList) {
	var errs field.ErrorList
	cr := enrollRule{name: r.Name, kinds: map[string]struct{}{}, mode: inherit(r.Mode, parent)}
	if r.Name == "" {
		errs = append(errs, field.Required(fld.Child("name"), "every rule needs a name: it appears in warnings, logs and metrics"))
	} else {
		for _, m := range validation.IsDNS1123Subdomain(r.Name) {
			errs = append(errs, field.Invalid(fld.Child("name"), r.Name, m))
		}
	}
	errs = append(errs, validateMode(r.Mode, fld.Child("mode"), true)...)
	known := slices.Sorted(maps.Keys(kinds))
	if len(r.Kinds) == 0 {
		errs = append(errs, field.Required(fld.Child("kinds"), "one or more of "+strings.Join(known, ", ")))
	}
	ownsPods := false
	for i, k := range r.Kinds {
		owns, ok := kinds[k]
		if !ok {
			errs = append(errs, field.Invalid(fld.Child("kinds").Index(i), k, "supported kinds: "+strings.Join(known, ", ")+"; declare another pod owner in the policy's kinds section"))
		}
		ownsPods = ownsPods || owns
		cr.kinds[k] = struct{}{}
	}
	var serrs field.ErrorList
	cr.namespaceSelector, serrs = compileSelector(r.NamespaceSelector, fld.Child("namespaceSelector"))
	errs = append(errs, serrs...)
	cr.selector, serrs = compileSelector(r.Selector, fld.Child("selector"))
	errs = append(errs, serrs...)
	var lerrs field.ErrorList
	cr.labels, lerrs = compileLabels(r.Labels, fld.Child("labels"))
	errs = append(errs, lerrs...)
	cr.podTemplateLabels, lerrs = compileLabels(r.PodTemplateLabels, fld.Child("podTemplateLabels"))
	errs = append(errs, lerrs...)
	cr.annotations, lerrs = compileScrape(r.Scrape, fld.Child("scrape"))
	errs = append(errs, lerrs...)
	if len(r.Labels) == 0 && len(r.PodTemplateLabels) == 0 {
		errs = append(errs, field.Required(fld.Child("labels"), "a rule must add labels or podTemplateLabels"))
	}
	if len(r.PodTemplateLabels) > 0 && len(r.Kinds) > 0 && !ownsPods {
		errs = append(errs, field.Invalid(fld.Child("podTemplateLabels"), "", "none of the rule's kinds has a pod template: only pod owners (Deployment, StatefulSet, DaemonSet, Job, CronJob and declared kinds) do"))
	}
	return cr, errs
}

// compileSelector turns a LabelSelector into a labels.Selector; nil and
// empty select everything.
func compileSelector(s *metav1.LabelSelector, fld *field.Path) (labels.Selector, field.ErrorList) {
	if s == nil {
		return labels.Everything(), nil
	}
	var errs field.ErrorList
	for _, k := range slices.Sorted(maps.Keys(s.MatchLabels)) { // in key order: the same message on every load
		v := s.MatchLabels[k]
		for _, m := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(fld.Child("matchLabels").Key(k), k, "label key: "+m))
		}
		for _, m := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(fld.Child("matchLabels").Key(k), v, m))
		}
	}
	for i, e := range s.MatchExpressions {
		efld := fld.Child("matchExpressions").Index(i)
		ops := []metav1.LabelSelectorOperator{metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpExists, metav1.LabelSelectorOpDoesNotExist}
		if !slices.Contains(ops, e.Operator) {
			errs = append(errs, field.NotSupported(efld.Child("operator"), e.Operator, ops))
		}
		for _, m := range validation.IsQualifiedName(e.Key) {
			errs = append(errs, field.Invalid(efld.Child("key"), e.Key, "label key: "+m))
		}
	}
	if len(errs) > 0 {
		return labels.Nothing(), errs
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return labels.Nothing(), field.ErrorList{field.Invalid(fld, s.String(), err.Error())}
	}
	return sel, nil
}

func compileMonitors(m *Monitors, parent Mode, errs field.ErrorList) (monitorsSection, field.ErrorList) {
	fld := field.NewPath("monitors")
	s := monitorsSection{mode: inherit(m.Mode, parent), kinds: map[string]struct{}{}}
	errs = append(errs, validateMode(m.Mode, fld.Child("mode"), true)...)
	if len(m.Kinds) == 0 {
		m.Kinds = slices.Clone(MonitorKinds)
	}
	for i, k := range m.Kinds {
		if !slices.Contains(LabelledKinds, k) {
			errs = append(errs, field.NotSupported(fld.Child("kinds").Index(i), k, LabelledKinds))
		}
		s.kinds[k] = struct{}{}
	}
	if m.Unselected == "" {
		m.Unselected = LevelWarn
	}
	if m.Unselected != LevelOff && m.Unselected != LevelWarn && m.Unselected != LevelDeny {
		errs = append(errs, field.NotSupported(fld.Child("unselected"), m.Unselected, []Level{LevelOff, LevelWarn, LevelDeny}))
	}
	s.unselected = m.Unselected
	if m.AutoSelect != "" {
		ns, name, ok := strings.Cut(m.AutoSelect, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			errs = append(errs, field.Invalid(fld.Child("autoSelect"), m.AutoSelect, "must be <namespace>/<name> of a Prometheus"))
		}
		s.autoSelectNS, s.autoSelectName = ns, name
	}
	if m.AutoSelectAlertmanager != "" {
		ns, name, ok := strings.Cut(m.AutoSelectAlertmanager, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			errs = append(errs, field.Invalid(fld.Child("autoSelectAlertmanager"), m.AutoSelectAlertmanager, "must be <namespace>/<name> of an Alertmanager"))
		}
		s.autoSelectAMNS, s.autoSelectAMName = ns, name
	}
	var lerrs field.ErrorList
	s.labels, lerrs = compileLabels(m.Labels, fld.Child("labels"))
	return s, append(errs, lerrs...)
}

func compileRules(r *Rules, parent Mode, errs field.ErrorList) (rulesSection, field.ErrorList) {
	fld := field.NewPath("rules")
	errs = append(errs, validateMode(r.Mode, fld.Child("mode"), true)...)
	s := rulesSection{mode: inherit(r.Mode, parent), require: r.Require, severityValues: map[string]struct{}{}}
	switch r.NameValidation {
	case "", NameValidationUTF8:
		r.NameValidation, s.scheme = NameValidationUTF8, model.UTF8Validation
	case NameValidationLegacy:
		s.scheme = model.LegacyValidation
	default:
		errs = append(errs, field.NotSupported(fld.Child("nameValidation"), r.NameValidation, []NameValidation{NameValidationUTF8, NameValidationLegacy}))
		// Keep checking the rest of the section with a valid scheme
		// (model panics on an unset one); the policy is refused anyway.
		s.scheme = model.UTF8Validation
	}
	if r.MaxBytes == 0 {
		r.MaxBytes = DefaultRulesMaxBytes
	}
	if r.MaxBytes < 0 {
		errs = append(errs, field.Invalid(fld.Child("maxBytes"), r.MaxBytes, "must be positive"))
	}
	s.maxBytes = r.MaxBytes
	for i, k := range r.Require.AlertLabels {
		if !s.scheme.IsValidLabelName(k) {
			errs = append(errs, field.Invalid(fld.Child("require", "alertLabels").Index(i), k, "not a valid Prometheus label name"))
		}
	}
	for i, k := range r.Require.AlertAnnotations {
		if !s.scheme.IsValidLabelName(k) {
			errs = append(errs, field.Invalid(fld.Child("require", "alertAnnotations").Index(i), k, "not a valid Prometheus annotation name"))
		}
	}
	for _, v := range r.Require.SeverityValues {
		s.severityValues[v] = struct{}{}
	}
	rfld := fld.Child("require")
	levels := []Level{LevelWarn, LevelDeny}
	if r.Require.Level == "" {
		r.Require.Level = LevelDeny
	}
	if !slices.Contains(levels, r.Require.Level) {
		errs = append(errs, field.NotSupported(rfld.Child("level"), r.Require.Level, levels))
	}
	for _, l := range []struct {
		v   *Level
		fld string
	}{
		{&r.Require.Levels.AlertLabels, "alertLabels"},
		{&r.Require.Levels.AlertAnnotations, "alertAnnotations"},
		{&r.Require.Levels.SeverityValues, "severityValues"},
	} {
		if *l.v == "" {
			*l.v = r.Require.Level
		}
		if !slices.Contains(levels, *l.v) {
			errs = append(errs, field.NotSupported(rfld.Child("levels", l.fld), *l.v, levels))
		}
	}
	s.require = r.Require
	lfld := fld.Child("lint")
	for _, l := range []struct {
		v   *Level
		def Level
		fld string
	}{
		{&r.Lint.DuplicateRules, LevelWarn, "duplicateRules"},
		{&r.Lint.RecordingRuleNaming, LevelWarn, "recordingRuleNaming"},
		{&r.Lint.ForTooShort, LevelOff, "forTooShort"},
	} {
		if *l.v == "" {
			*l.v = l.def
		}
		if *l.v != LevelOff && *l.v != LevelWarn && *l.v != LevelDeny {
			errs = append(errs, field.NotSupported(lfld.Child(l.fld), *l.v, []Level{LevelOff, LevelWarn, LevelDeny}))
		}
	}
	if r.Lint.MinFor == "" {
		r.Lint.MinFor = DefaultMinFor
	}
	d, err := model.ParseDuration(r.Lint.MinFor)
	if err != nil {
		errs = append(errs, field.Invalid(lfld.Child("minFor"), r.Lint.MinFor, "not a Prometheus duration (e.g. 5m): "+err.Error()))
	}
	s.minFor = d
	s.lint = r.Lint
	return s, errs
}
