package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/promenroll/promenroll/internal/testdiff"
)

func TestParseRejectsInvalidPolicies(t *testing.T) {
	head := "apiVersion: promenroll.io/v1alpha1\nkind: Policy\n"
	tests := []struct {
		name string
		doc  string
		want []Problem
	}{{
		name: "an unknown field is an error naming its path and line",
		doc:  head + "enroll:\n- name: web\n  kinds: [Service]\n  labelz: {a: b}\n",
		want: []Problem{{Line: 6, Field: "enroll[0].labelz", Msg: "unknown field: check the spelling against the policy reference (docs/policy.md)"}},
	}, {
		name: "a declared kind is refused with every problem named: version, kind, resource and template path",
		doc: head + `kinds:
- {apiVersion: argoproj.io, kind: rollout, podTemplate: spec..template}
- {apiVersion: apps/v1, kind: Rollout, resource: rollouts, podTemplate: metadata.template}
- {apiVersion: example.com/v1, kind: Thing, resource: things, podTemplate: ""}
- {apiVersion: example.com/v1, kind: Thing, resource: things, podTemplate: 'spec.template[0]'}
enroll:
- {name: w, kinds: [Thing], labels: {a: b}}
`,
		want: []Problem{
			{Line: 4, Field: "kinds[0].apiVersion", Msg: `Invalid value: "argoproj.io": must be group/version, such as argoproj.io/v1alpha1`},
			{Line: 4, Field: "kinds[0].kind", Msg: `Invalid value: "rollout": must be a kind as the API server serves it, such as Rollout`},
			{Line: 4, Field: "kinds[0].resource", Msg: `Required value: the plural resource name the webhook configuration's rules and RBAC need, as kubectl api-resources prints it (rollouts)`},
			{Line: 4, Field: "kinds[0].resource", Msg: `Invalid value: "": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`},
			{Line: 4, Field: "kinds[0].podTemplate", Msg: `Invalid value: "spec..template": member "" is not a field name (letters and digits, dot-separated, such as spec.template)`},
			{Line: 5, Field: "kinds[1].apiVersion", Msg: `Invalid value: "apps/v1": the kinds of apps are built in: name them in enroll rules' kinds`},
			{Line: 5, Field: "kinds[1].podTemplate", Msg: `Invalid value: "metadata.template": a pod template lives under spec (or another member of the object), never under metadata`},
			{Line: 6, Field: "kinds[2].podTemplate", Msg: `Required value: the dot-separated path to the kind's pod template, such as spec.template`},
			{Line: 7, Field: "kinds[3].podTemplate", Msg: `Invalid value: "spec.template[0]": member "template[0]" is not a field name (letters and digits, dot-separated, such as spec.template)`},
			{Line: 7, Field: "kinds[3]", Msg: `Duplicate value: "Thing.example.com"`},
		},
	}, {
		name: "a duplicate key is an error",
		doc:  head + "mode: enforce\nmode: dry-run\n",
		want: []Problem{{Msg: "not valid YAML: yaml: unmarshal errors:\n  line 4: key \"mode\" already set in map"}},
	}, {
		name: "an unknown mode, kind and operator are each named",
		doc: head + `mode: audit
enroll:
- name: web
  kinds: [Pod]
  selector: {matchExpressions: [{key: app, operator: Exist}]}
  labels: {a: b}
`,
		want: []Problem{
			{Line: 3, Field: "mode", Msg: `Unsupported value: "audit": supported values: "enforce", "dry-run"`},
			{Line: 6, Field: "enroll[0].kinds[0]", Msg: `Invalid value: "Pod": supported kinds: CronJob, DaemonSet, Deployment, Job, Service, StatefulSet; declare another pod owner in the policy's kinds section`},
			{Line: 7, Field: "enroll[0].selector.matchExpressions[0].operator", Msg: `Unsupported value: "Exist": supported values: "In", "NotIn", "Exists", "DoesNotExist"`},
		},
	}, {
		name: "an invalid label key, value and substitution are each named",
		doc: head + `enroll:
- name: web
  kinds: [Deployment]
  labels:
    "bad key!": x
    ok: "not valid!"
    team: "{namespaceLabels:team}"
    owner: "{label:team"
`,
		want: []Problem{
			{Line: 7, Field: "enroll[0].labels[bad key!]", Msg: `Invalid value: "bad key!": label key: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`},
			{Line: 8, Field: "enroll[0].labels[ok]", Msg: `Invalid value: "not valid!": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`},
			{Line: 10, Field: "enroll[0].labels[owner]", Msg: `Invalid value: "{label:team": unclosed '{': substitutions are {name}, {namespace}, {label:KEY}, {namespaceLabel:KEY}`},
			{Line: 9, Field: "enroll[0].labels[team]", Msg: `Invalid value: "{namespaceLabels:team}": unknown substitution {namespaceLabels:team}: use {name}, {namespace}, {label:KEY} or {namespaceLabel:KEY}`},
		},
	}, {
		name: "pod template labels on a Service-only rule are refused",
		doc:  head + "enroll:\n- name: web\n  kinds: [Service]\n  podTemplateLabels: {a: b}\n",
		want: []Problem{{Line: 6, Field: "enroll[0].podTemplateLabels", Msg: `Invalid value: "": none of the rule's kinds has a pod template: only pod owners (Deployment, StatefulSet, DaemonSet, Job, CronJob and declared kinds) do`}},
	}, {
		name: "rules without names and duplicate names are refused",
		doc:  head + "enroll:\n- kinds: [Service]\n  labels: {a: b}\n- name: x\n  kinds: [Service]\n  labels: {a: b}\n- name: x\n  kinds: [Service]\n  labels: {a: b}\n",
		want: []Problem{
			{Line: 4, Field: "enroll[0].name", Msg: "Required value: every rule needs a name: it appears in warnings, logs and metrics"},
			{Line: 9, Field: "enroll[2].name", Msg: `Duplicate value: "x (also enroll[1])"`},
		},
	}, {
		name: "bad rule gate settings are named",
		doc:  head + "rules:\n  nameValidation: ascii\n  lint:\n    forTooShort: error\n    minFor: soon\n",
		want: []Problem{
			{Line: 4, Field: "rules.nameValidation", Msg: `Unsupported value: "ascii": supported values: "utf8", "legacy"`},
			{Line: 6, Field: "rules.lint.forTooShort", Msg: `Unsupported value: "error": supported values: "off", "warn", "deny"`},
			{Line: 7, Field: "rules.lint.minFor", Msg: `Invalid value: "soon": not a Prometheus duration (e.g. 5m): not a valid duration string: "soon"`},
		},
	}, {
		name: "an unknown enrollment engine is refused",
		doc:  minimalPolicy + "enrollment: {engine: kyverno}\n",
		want: []Problem{{Line: 3, Field: "enrollment.engine", Msg: `Unsupported value: "kyverno": supported values: "webhook", "native"`}},
	}, {
		name: "a wrong apiVersion and kind are refused",
		doc:  "apiVersion: v1\nkind: ConfigMap\n",
		want: []Problem{
			{Line: 1, Field: "apiVersion", Msg: `Invalid value: "v1": must be promenroll.io/v1alpha1`},
			{Line: 2, Field: "kind", Msg: `Invalid value: "ConfigMap": must be Policy`},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("policy.yaml", []byte(tt.doc), Options{})
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Parse() error = %v, want *policy.Error", err)
			}
			if diff := testdiff.Diff(tt.want, perr.Problems); diff != "" {
				t.Errorf("problems mismatch (-want +got):\n%s", diff)
			}
			if !strings.Contains(err.Error(), "policy policy.yaml is invalid") {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestParseAppliesDefaults(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	want := File{
		APIVersion: APIVersion, Kind: Kind, Mode: ModeEnforce,
		Monitors: &Monitors{Kinds: MonitorKinds, Unselected: LevelWarn},
		Rules: &Rules{NameValidation: NameValidationUTF8, MaxBytes: DefaultRulesMaxBytes,
			// Conventions deny unless a level says otherwise: the meaning
			// rules.require had before it had levels.
			Require: Require{Level: LevelDeny, Levels: RequireLevels{AlertLabels: LevelDeny, AlertAnnotations: LevelDeny, SeverityValues: LevelDeny}},
			Lint:    Lint{DuplicateRules: LevelWarn, RecordingRuleNaming: LevelWarn, ForTooShort: LevelOff, MinFor: "1m"}},
		AlertmanagerConfigs: &AlertmanagerConfigs{},
		Enrollment:          &Enrollment{Engine: EngineWebhook},
	}
	if diff := testdiff.Diff(want, p.Source); diff != "" {
		t.Errorf("defaults mismatch (-want +got):\n%s", diff)
	}
	if p.Generation == "" {
		t.Error("no generation")
	}
}

func TestParseAcceptsTheSpecExample(t *testing.T) {
	p := mustParse(t, specExample)
	if got := len(p.Source.Enroll); got != 1 {
		t.Fatalf("enroll rules = %d, want 1", got)
	}
	if p.Source.Enroll[0].Mode != ModeDryRun || p.Source.Rules.Lint.ForTooShort != LevelOff {
		t.Errorf("parsed %+v", p.Source)
	}
}

// specExample is the policy of the product spec, verbatim.
const specExample = `apiVersion: promenroll.io/v1alpha1
kind: Policy
mode: enforce                     # enforce | dry-run (default for every section)
enroll:                           # ordered enrollment rules
- name: web-services
  kinds: [Service]                # Deployment, StatefulSet, DaemonSet, Service
  namespaceSelector: {matchLabels: {monitoring: enabled}}   # on namespace labels
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}
  labels:                         # object metadata.labels (ServiceMonitor selects Services)
    monitoring.promenroll.io/scrape: "true"
    team: "{namespaceLabel:team}" # substitutions: {name} {namespace} {label:K} {namespaceLabel:K}
  podTemplateLabels: {}           # workloads: spec.template.metadata.labels (PodMonitor)
  mode: dry-run                   # optional per-rule override
monitors:                         # selector labels for ServiceMonitor/PodMonitor/PrometheusRule
  labels: {release: kube-prometheus-stack}
rules:                            # PrometheusRule gate
  nameValidation: utf8            # utf8 (Prometheus 3 default) | legacy
  maxBytes: 524288                # fits the operator's ConfigMap budget
  require:
    alertLabels: [severity]
    alertAnnotations: [summary]
    severityValues: [critical, warning, info]
  lint:                           # each: off | warn | deny
    duplicateRules: warn          # same name + labels twice
    recordingRuleNaming: warn     # level:metric:operations
    forTooShort: off
`

func TestLimitWarnings(t *testing.T) {
	long := strings.Repeat("x", 300)
	many := make([]string, 40)
	for i := range many {
		many[i] = strings.Repeat("w", 200)
	}
	tests := []struct {
		name string
		in   []string
		want func([]string) string // "" when fine
	}{{
		name: "a warning over 256 characters is cut to 256",
		in:   []string{long},
		want: func(out []string) string {
			if len(out) != 1 || len([]rune(out[0])) != MaxWarningRunes || !strings.HasSuffix(out[0], "...") {
				return "not cut to 256 with an ellipsis"
			}
			return ""
		},
	}, {
		name: "warnings over 4 KiB in total end with an and-N-more line",
		in:   many,
		want: func(out []string) string {
			total := 0
			for _, w := range out {
				total += len([]rune(w))
			}
			if total > MaxTotalWarningRunes {
				return "total over 4096"
			}
			if !strings.HasPrefix(out[len(out)-1], "... and ") {
				return "no and-N-more line: " + out[len(out)-1]
			}
			return ""
		},
	}, {
		name: "control characters become spaces",
		in:   []string{"a\nb\tc"},
		want: func(out []string) string {
			if out[0] != "a b c" {
				return out[0]
			}
			return ""
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msg := tt.want(LimitWarnings(tt.in)); msg != "" {
				t.Error(msg)
			}
		})
	}
}
