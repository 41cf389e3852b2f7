package policy

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// APIVersion and Kind identify a promenroll policy document.
const (
	APIVersion = "promenroll.io/v1alpha1"
	Kind       = "Policy"
)

// Mode says whether a part of the policy acts (enforce) or only reports what
// it would have done (dry-run).
type Mode string

// The modes. The zero value means "inherit from the enclosing section".
const (
	ModeEnforce Mode = "enforce"
	ModeDryRun  Mode = "dry-run"
)

// Level is the severity of a rule convention check.
type Level string

// The levels of a convention check.
const (
	LevelOff  Level = "off"
	LevelWarn Level = "warn"
	LevelDeny Level = "deny"
)

// UnmarshalJSON accepts the YAML 1.1 reading of an unquoted "off" (the
// boolean false) as LevelOff, so `forTooShort: off` means what it says.
func (l *Level) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "false":
		*l = LevelOff
		return nil
	case "true":
		return fmt.Errorf("level must be off, warn or deny, not %s", b)
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("level must be off, warn or deny: %w", err)
	}
	*l = Level(s)
	return nil
}

// NameValidation is the metric/label name validation scheme used when
// checking PrometheusRules, as in Prometheus' metric_name_validation_scheme.
type NameValidation string

// The name validation schemes Prometheus supports.
const (
	NameValidationUTF8   NameValidation = "utf8"
	NameValidationLegacy NameValidation = "legacy"
)

// File is the policy document as written by users. Field names are a
// contract: users' files and the e2e tests rely on them.
type File struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Mode is the default for every section and rule. Default: enforce.
	Mode Mode `json:"mode,omitempty"`
	// ExcludeNamespaces are left alone, in addition to kube-system,
	// kube-public, kube-node-lease and promenroll's own namespace.
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
	// Kinds declares more pod owners, enrolled like Deployments: custom
	// resources with a pod template (Argo Rollouts, OpenKruise CloneSets).
	Kinds []KindDeclaration `json:"kinds,omitempty"`
	// Enroll lists the enrollment rules, applied in order.
	Enroll []EnrollRule `json:"enroll,omitempty"`
	// Enrollment chooses what applies the enroll rules.
	Enrollment *Enrollment `json:"enrollment,omitempty"`
	// Monitors says which labels ServiceMonitors, PodMonitors and
	// PrometheusRules need for a Prometheus to select them.
	Monitors *Monitors `json:"monitors,omitempty"`
	// Rules configures the PrometheusRule gate.
	Rules *Rules `json:"rules,omitempty"`
	// AlertmanagerConfigs configures the AlertmanagerConfig gate.
	AlertmanagerConfigs *AlertmanagerConfigs `json:"alertmanagerConfigs,omitempty"`
}

// Engine is what applies the enroll rules.
type Engine string

const (
	// EngineWebhook: promenroll's mutating webhook enrolls (the default).
	EngineWebhook Engine = "webhook"
	// EngineNative: the API server enrolls with the MutatingAdmissionPolicies
	// `promenroll compile` prints, which the chart and kustomize render;
	// the enrollment webhook is not installed.
	EngineNative Engine = "native"
)

// Enrollment chooses what applies the enroll rules.
type Enrollment struct {
	// Engine is webhook (default) or native.
	Engine Engine `json:"engine,omitempty"`
}

// AlertmanagerConfigs configures the AlertmanagerConfig gate.
type AlertmanagerConfigs struct {
	// Mode overrides the policy mode for this section.
	Mode Mode `json:"mode,omitempty"`
}

// KindDeclaration declares a kind that owns pods through a pod template, so
// enroll rules can name it in their kinds.
type KindDeclaration struct {
	// APIVersion is the kind's group and version (argoproj.io/v1alpha1):
	// the webhook configuration's rules name them.
	APIVersion string `json:"apiVersion"`
	// Kind is the kind (Rollout). Enroll rules name it so, or kind.group
	// when a built-in kind has the same name.
	Kind string `json:"kind"`
	// Resource is the plural resource name (rollouts), as kubectl
	// api-resources prints it: the webhook configuration's rules and the
	// RBAC audit needs name it.
	Resource string `json:"resource"`
	// PodTemplate is the dot-separated path to the kind's pod template
	// (spec.template).
	PodTemplate string `json:"podTemplate"`
	// TemplateUpdateRollsOut says an UPDATE of the pod template replaces
	// the running pods, as a Deployment's does: UPDATE then never adds pod
	// template labels or scrape annotations, only CREATE does. false (a
	// template that only the next pods are made from, as a CronJob's):
	// UPDATE adds them too. Default true.
	TemplateUpdateRollsOut *bool `json:"templateUpdateRollsOut,omitempty"`
}

// EnrollRule adds labels to matching workloads and Services.
type EnrollRule struct {
	// Name identifies the rule in warnings, logs and metrics.
	Name string `json:"name"`
	// Kinds the rule applies to: Deployment, StatefulSet, DaemonSet, Job,
	// CronJob, Service, and the policy's declared kinds.
	Kinds []string `json:"kinds"`
	// NamespaceSelector matches the labels of the object's namespace.
	// Empty or absent: every namespace.
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	// Selector matches the object's own labels. Empty or absent: every object.
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Labels are added to metadata.labels. Values may use {name},
	// {namespace}, {label:KEY} and {namespaceLabel:KEY}.
	Labels map[string]string `json:"labels,omitempty"`
	// PodTemplateLabels are added to the pod template's labels of pod
	// owners on CREATE (and on UPDATE where that rolls no pod out: a
	// CronJob's), with the same substitutions.
	PodTemplateLabels map[string]string `json:"podTemplateLabels,omitempty"`
	// Scrape sets how the enrollment monitors scrape what the rule enrolls,
	// written as the prometheus.io/port, /path and /scheme annotations: on
	// the pod template of workloads (CREATE only, like podTemplateLabels),
	// on Services themselves (CREATE and UPDATE). Add-only: an annotation
	// the object already has is kept.
	Scrape *Scrape `json:"scrape,omitempty"`
	// Mode overrides the policy mode for this rule.
	Mode Mode `json:"mode,omitempty"`
}

// Scrape is where a target's metrics are: any field may be left out.
type Scrape struct {
	// Port is a container or Service port name, or a port number.
	Port intstr.IntOrString `json:"port,omitempty"`
	// Path is the HTTP path, starting with "/". Default (unset) /metrics.
	Path string `json:"path,omitempty"`
	// Scheme is http or https. Default (unset) http.
	Scheme string `json:"scheme,omitempty"`
}

// Monitors configures selector awareness for Prometheus Operator objects.
type Monitors struct {
	// Mode overrides the policy mode for this section.
	Mode Mode `json:"mode,omitempty"`
	// Kinds the labels are added to. Default: ServiceMonitor, PodMonitor,
	// PrometheusRule, Probe, ScrapeConfig; AlertmanagerConfig only when
	// listed.
	Kinds []string `json:"kinds,omitempty"`
	// Labels the cluster's Prometheus selects on (for kube-prometheus-stack,
	// release: <helm release name>). Same substitutions as enroll labels.
	Labels map[string]string `json:"labels,omitempty"`
	// AutoSelect names the Prometheus (namespace/name) that monitors and
	// rules should be loaded by: promenroll adds the labels its live
	// serviceMonitorSelector, podMonitorSelector or ruleSelector requires
	// (matchLabels, and In expressions with one value), add-only, besides
	// Labels. What adding labels cannot satisfy is said in a warning.
	AutoSelect string `json:"autoSelect,omitempty"`
	// AutoSelectAlertmanager is autoSelect for AlertmanagerConfigs (when
	// kinds lists them): the Alertmanager (namespace/name) whose
	// alertmanagerConfigSelector's labels they get.
	AutoSelectAlertmanager string `json:"autoSelectAlertmanager,omitempty"`
	// Unselected is what to do with a monitor or rule that no Prometheus in
	// the cluster loads (after the labels above): off, warn or deny.
	// Default warn.
	Unselected Level `json:"unselected,omitempty"`
}

// Rules configures the PrometheusRule gate.
type Rules struct {
	// Mode overrides the policy mode for this section.
	Mode Mode `json:"mode,omitempty"`
	// NameValidation is utf8 (Prometheus 3 default) or legacy.
	NameValidation NameValidation `json:"nameValidation,omitempty"`
	// MaxBytes caps the size of a PrometheusRule object. Default 524288.
	MaxBytes int64 `json:"maxBytes,omitempty"`
	// Require lists the conventions every alerting rule must follow.
	Require Require `json:"require,omitempty"`
	// Lint configures the convention checks.
	Lint Lint `json:"lint,omitempty"`
}

// Require lists conventions for alerting rules, and how a violation is
// reported: deny (the default, the meaning these fields have always had)
// or warn, for the whole section (Level) or per convention (Levels).
type Require struct {
	AlertLabels      []string `json:"alertLabels,omitempty"`
	AlertAnnotations []string `json:"alertAnnotations,omitempty"`
	SeverityValues   []string `json:"severityValues,omitempty"`
	// Level is what a violation of any of the conventions above does:
	// warn or deny. Default deny.
	Level Level `json:"level,omitempty"`
	// Levels overrides Level per convention.
	Levels RequireLevels `json:"levels,omitempty"`
}

// RequireLevels are the per-convention levels of rules.require: each warn
// or deny, unset inherits rules.require.level.
type RequireLevels struct {
	AlertLabels      Level `json:"alertLabels,omitempty"`
	AlertAnnotations Level `json:"alertAnnotations,omitempty"`
	SeverityValues   Level `json:"severityValues,omitempty"`
}

// Lint configures convention checks, each off, warn or deny.
type Lint struct {
	// DuplicateRules: the same rule name with the same labels twice in one
	// object. Default warn.
	DuplicateRules Level `json:"duplicateRules,omitempty"`
	// RecordingRuleNaming: record names should read level:metric:operations.
	// Default warn.
	RecordingRuleNaming Level `json:"recordingRuleNaming,omitempty"`
	// ForTooShort: an alerting rule whose `for` is below MinFor (absent
	// counts as 0s). Default off.
	ForTooShort Level `json:"forTooShort,omitempty"`
	// MinFor is the threshold of ForTooShort. Default 1m.
	MinFor string `json:"minFor,omitempty"`
}
