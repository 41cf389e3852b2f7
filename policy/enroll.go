package policy

import (
	"fmt"
	"slices"
	"strings"
)

// Well-known labels and annotations.
const (
	// OptOutLabel set to "false" on an object or its namespace turns
	// enrollment off. The webhook configurations' objectSelector uses it too.
	OptOutLabel = "promenroll.io/enroll"
	// ModeAnnotation on a namespace can relax the mode to dry-run, never
	// tighten it.
	ModeAnnotation = "promenroll.io/mode"
)

// Operation is the admission operation.
type Operation string

// The operations promenroll acts on.
const (
	Create Operation = "CREATE"
	Update Operation = "UPDATE"
)

// Target says where a label or annotation goes. The pod template targets
// are named for the template at spec.template (metrics and logs carry these
// names); a kind that keeps its template elsewhere (a CronJob's is at
// spec.jobTemplate.spec.template) writes to its own template, and warnings
// name that path (Object.Field).
type Target string

// The places enrollment writes to: labels, and the scrape annotations.
const (
	MetadataLabels         Target = "metadata.labels"
	PodTemplateLabels      Target = "spec.template.metadata.labels"
	MetadataAnnotations    Target = "metadata.annotations"
	PodTemplateAnnotations Target = "spec.template.metadata.annotations"
)

// targetOrder sorts changes: metadata before the pod template, labels
// before annotations.
var targetOrder = []Target{MetadataLabels, MetadataAnnotations, PodTemplateLabels, PodTemplateAnnotations}

// Object is what enrollment reads of a workload or Service.
type Object struct {
	Kind      string
	Name      string
	Namespace string
	Labels    map[string]string
	// Annotations are metadata.annotations (read for Services only).
	Annotations map[string]string
	// PodTemplatePath is where the kind keeps its pod template
	// (spec.template, a CronJob's spec.jobTemplate.spec.template); empty
	// for kinds that own no pods (Services).
	PodTemplatePath string
	// TemplateUpdateAdds says an UPDATE may add to the pod template: it
	// rolls no pod out (a CronJob's). Otherwise only CREATE does.
	TemplateUpdateAdds bool
	// HasPodTemplate is true when the object has a pod template at
	// PodTemplatePath; TemplateProblem says why one there was unreadable.
	HasPodTemplate         bool
	TemplateProblem        string
	PodTemplateLabels      map[string]string
	PodTemplateAnnotations map[string]string
	// Ports are the pod template's container ports, or a Service's ports.
	Ports []Port
}

// OwnsPods reports whether the object's kind has a pod template.
func (o Object) OwnsPods() bool { return o.PodTemplatePath != "" }

// Field is the field path a target names in this object: the pod template
// targets are under the kind's template path.
func (o Object) Field(t Target) string {
	switch t {
	case PodTemplateLabels:
		return o.PodTemplatePath + ".metadata.labels"
	case PodTemplateAnnotations:
		return o.PodTemplatePath + ".metadata.annotations"
	}
	return string(t)
}

// whatOf names a target in skipped-value warnings ("label K skipped").
func whatOf(t Target) string {
	switch t {
	case MetadataAnnotations:
		return "annotation"
	case PodTemplateLabels:
		return "pod template label"
	case PodTemplateAnnotations:
		return "pod template annotation"
	}
	return "label"
}

// Namespace is what enrollment reads of the object's namespace.
type Namespace struct {
	Name        string
	Labels      map[string]string
	Annotations map[string]string
}

// EnrollRequest is one admission of a workload or Service.
type EnrollRequest struct {
	Operation Operation
	Object    Object
	// Old is the stored object on UPDATE, nil on CREATE.
	Old       *Object
	Namespace Namespace
}

// LabelChange is one label or scrape annotation that enrollment adds (Mode
// enforce) or would add (Mode dry-run).
type LabelChange struct {
	Target Target
	Key    string
	Value  string
	Rule   string
	Mode   Mode
	// Sticky is true when the label is put back on UPDATE because the
	// stored object carried it from the policy and the new one dropped it.
	Sticky bool
}

// Decision is the outcome of enrollment for one request.
type Decision struct {
	// Changes are sorted by target then key, so patches are deterministic.
	Changes []LabelChange
	// Warnings explain every label that was skipped or kept.
	Warnings []string
	// Matched names the rules that matched, in policy order.
	Matched []string
	// Reason says why nothing was done, when nothing was.
	Reason string
}

// Enforced returns the changes to apply now.
func (d Decision) Enforced() []LabelChange {
	return slices.DeleteFunc(slices.Clone(d.Changes), func(c LabelChange) bool { return c.Mode != ModeEnforce })
}

// DryRun returns the changes that dry-run mode only reports.
func (d Decision) DryRun() []LabelChange {
	return slices.DeleteFunc(slices.Clone(d.Changes), func(c LabelChange) bool { return c.Mode != ModeDryRun })
}

// Enroll decides which labels a workload or Service gets. It never removes
// or overwrites a label: a conflicting value is kept and a warning names it.
// On CREATE, metadata.labels and pod template labels are injected. On
// UPDATE, metadata.labels are injected (no rollout follows), pod template
// labels only come back when the stored object carried them from the policy
// and the new one dropped them (sticky), so an update never triggers a
// rollout the user did not ask for.
func (p *Policy) Enroll(req EnrollRequest) Decision {
	var d Decision
	if reason, ok := p.Excluded(req.Namespace, req.Object.Labels); ok {
		d.Reason = reason
		return d
	}
	obj := req.Object
	pl := newPlanner(&d, obj.Field)
	plan := pl.plan
	src := substitutionSource{name: obj.Name, namespace: obj.Namespace, labels: obj.Labels, namespaceLabels: req.Namespace.Labels}
	inject := func(r *enrollRule, mode Mode, lts []labelTemplate, target Target, current map[string]string) {
		for _, lt := range lts {
			v, why := lt.value.expand(src)
			if why != "" {
				d.Warnings = append(d.Warnings, prefix(mode)+fmt.Sprintf("%s %s skipped (rule %s): %s", whatOf(target), lt.key, r.name, why))
				continue
			}
			plan(LabelChange{Target: target, Key: lt.key, Value: v, Rule: r.name, Mode: mode}, current)
		}
	}
	for _, r := range p.matching(obj, req.Namespace) {
		d.Matched = append(d.Matched, r.name)
		mode := effectiveMode(r.mode, req.Namespace)
		inject(r, mode, r.labels, MetadataLabels, obj.Labels)
		if obj.Kind == "Service" {
			inject(r, mode, r.annotations, MetadataAnnotations, obj.Annotations)
		}
		if len(r.podTemplateLabels)+len(r.annotations) == 0 || !obj.OwnsPods() || req.Operation != Create && !obj.TemplateUpdateAdds {
			continue
		}
		if !obj.HasPodTemplate {
			why := "the object has no " + obj.PodTemplatePath
			if obj.TemplateProblem != "" {
				why = obj.TemplateProblem
			}
			d.Warnings = append(d.Warnings, prefix(mode)+fmt.Sprintf("pod template labels and annotations skipped (rule %s): %s", r.name, why))
			continue
		}
		inject(r, mode, r.podTemplateLabels, PodTemplateLabels, obj.PodTemplateLabels)
		inject(r, mode, r.annotations, PodTemplateAnnotations, obj.PodTemplateAnnotations)
	}
	if req.Operation == Update && req.Old != nil {
		p.sticky(req, plan)
	}
	if len(d.Matched) > 0 {
		d.Warnings = append(d.Warnings, ScrapeWarnings(obj, d)...)
	}
	if len(d.Matched) == 0 && len(d.Changes) == 0 && d.Reason == "" {
		d.Reason = "no enrollment rule matches"
	}
	d.sort()
	return d
}

// planner collects label changes add-only: a label the object already has,
// or one an earlier rule planned, is kept, and a differing wish is warned.
type planner struct {
	d       *Decision
	planned map[Target]map[string]string
	// field names a target in warnings (Object.Field).
	field func(Target) string
}

func newPlanner(d *Decision, field func(Target) string) *planner {
	return &planner{d: d, planned: map[Target]map[string]string{}, field: field}
}

func (pl *planner) plan(c LabelChange, current map[string]string) {
	if v, ok := current[c.Key]; ok {
		if v != c.Value && !c.Sticky {
			pl.d.Warnings = append(pl.d.Warnings, prefix(c.Mode)+fmt.Sprintf("%s %s=%q kept; rule %s wants %q", pl.field(c.Target), c.Key, v, c.Rule, c.Value))
		}
		return
	}
	if v, ok := pl.planned[c.Target][c.Key]; ok {
		if v != c.Value {
			pl.d.Warnings = append(pl.d.Warnings, prefix(c.Mode)+fmt.Sprintf("%s %s: rule %s wants %q, an earlier rule set %q", pl.field(c.Target), c.Key, c.Rule, c.Value, v))
		}
		return
	}
	if pl.planned[c.Target] == nil {
		pl.planned[c.Target] = map[string]string{}
	}
	pl.planned[c.Target][c.Key] = c.Value
	pl.d.Changes = append(pl.d.Changes, c)
}

// sort orders changes by target (targetOrder) then key.
func (d *Decision) sort() {
	slices.SortStableFunc(d.Changes, func(a, b LabelChange) int {
		if a.Target != b.Target {
			return slices.Index(targetOrder, a.Target) - slices.Index(targetOrder, b.Target)
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// sticky plans the labels and scrape annotations the stored object carried
// from the policy and the new object dropped. Putting back what the stored
// pod template had changes nothing in it, so no rollout follows.
func (p *Policy) sticky(req EnrollRequest, plan func(LabelChange, map[string]string)) {
	old, cur := *req.Old, req.Object
	src := substitutionSource{name: old.Name, namespace: old.Namespace, labels: old.Labels, namespaceLabels: req.Namespace.Labels}
	for _, r := range p.matching(old, req.Namespace) {
		mode := effectiveMode(r.mode, req.Namespace)
		keep := func(lts []labelTemplate, target Target, was, now map[string]string) {
			for _, lt := range lts {
				if v, why := lt.value.expand(src); why == "" && was[lt.key] == v {
					if _, kept := now[lt.key]; !kept {
						plan(LabelChange{Target: target, Key: lt.key, Value: v, Rule: r.name, Mode: mode, Sticky: true}, now)
					}
				}
			}
		}
		keep(r.labels, MetadataLabels, old.Labels, cur.Labels)
		if cur.Kind == "Service" {
			keep(r.annotations, MetadataAnnotations, old.Annotations, cur.Annotations)
		}
		if cur.HasPodTemplate {
			keep(r.podTemplateLabels, PodTemplateLabels, old.PodTemplateLabels, cur.PodTemplateLabels)
			keep(r.annotations, PodTemplateAnnotations, old.PodTemplateAnnotations, cur.PodTemplateAnnotations)
		}
	}
}

// NeedsOld reports whether an UPDATE's decision can depend on the stored
// object. Only sticky labels read it, and they only put back a key the new
// object lacks: when the new object carries every key an enrollment rule
// can set (labels, pod template labels, scrape annotations), Enroll decides
// the same with or without the old object, and the webhook skips decoding
// it. An UPDATE of an enrolled object, the common case, is that one.
func (p *Policy) NeedsOld(obj Object) bool {
	missing := func(lts []labelTemplate, m map[string]string) bool {
		for _, lt := range lts {
			if _, ok := m[lt.key]; !ok {
				return true
			}
		}
		return false
	}
	for i := range p.enroll {
		r := &p.enroll[i]
		if _, ok := r.kinds[obj.Kind]; !ok {
			continue
		}
		if missing(r.labels, obj.Labels) ||
			obj.Kind == "Service" && missing(r.annotations, obj.Annotations) ||
			obj.HasPodTemplate && (missing(r.podTemplateLabels, obj.PodTemplateLabels) || missing(r.annotations, obj.PodTemplateAnnotations)) {
			return true
		}
	}
	return false
}

func prefix(m Mode) string {
	if m == ModeDryRun {
		return DryRunPrefix
	}
	return ""
}
