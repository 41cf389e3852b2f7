package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
)

// MutationRequest is one object for the mutating side: an admission
// request's object (serve), or a manifest or stored object that check and
// audit judge as a CREATE.
type MutationRequest struct {
	Operation Operation
	// Object is the object as JSON; OldObject the stored one on UPDATE
	// (read only when the decision can depend on it: NeedsOld).
	Object, OldObject []byte
	// Namespace is the object's namespace (its name wins over the one in
	// the body, as the request's does).
	Namespace Namespace
	// Prometheuses are the cluster's Prometheus objects' selectors, for
	// the kinds that read them (ReadsPrometheuses). PrometheusesErr says
	// they could not be read: what needs them is skipped with a warning.
	Prometheuses    []PrometheusSelectors
	PrometheusesErr error
}

// Mutation is the mutating side's decision on one object: the label and
// annotation changes (enforced and dry-run, each with its rule), the
// PrometheusRule values coerced to strings, every warning and the reason
// for a skip, and what was read.
type Mutation struct {
	Decision
	// Object is what the decision read of the object.
	Object Object
	// Coercions are the enforced coercions of non-string PrometheusRule
	// label and annotation values (dry-run ones are warnings only).
	Coercions []Coercion
	shape     *objectShape
}

// Warnings are the mutation's admission warnings, unlimited (the webhook
// fits them to the API server's limits with LimitWarnings).
func (m Mutation) Warnings() []string { return WarningsFor(m.Object, m.Decision) }

// Mode is the mode the mutation is reported under: enforce if anything is
// applied, dry-run if it only reports.
func (m Mutation) Mode() Mode {
	if len(m.Enforced()) > 0 || len(m.Coercions) > 0 {
		return ModeEnforce
	}
	if len(m.DryRun()) > 0 || slices.ContainsFunc(m.Decision.Warnings, func(w string) bool { return strings.HasPrefix(w, DryRunPrefix) }) {
		return ModeDryRun
	}
	return ModeEnforce
}

// Patch is the RFC 6902 patch of the enforced changes against the object
// as received: label and annotation adds, then coercions' replaces.
func (m Mutation) Patch() []PatchOp {
	if m.shape == nil {
		return nil
	}
	ops := labelPatch(m.shape, m.Enforced())
	for _, c := range m.Coercions {
		ops = append(ops, PatchOp{Op: "replace", Path: JSONPointer(c.Path), Value: c.To})
	}
	return ops
}

// Apply returns raw (the object the mutation was decided on) with the
// patch applied, the object as the API server stores it, and the patch as
// the JSON /mutate sends (nil when there is nothing to change).
func (m Mutation) Apply(raw []byte) (stored, patch []byte, err error) {
	ops := m.Patch()
	if len(ops) == 0 {
		return raw, nil, nil
	}
	if patch, err = json.Marshal(ops); err != nil {
		return nil, nil, fmt.Errorf("encode the patch: %w", err)
	}
	decoded, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return nil, nil, fmt.Errorf("decode the patch %s: %w", patch, err)
	}
	if stored, err = decoded.Apply(raw); err != nil {
		return nil, nil, fmt.Errorf("apply the patch %s: %w", patch, err)
	}
	return stored, patch, nil
}

// mutator decides one kind's mutation from its decoded shape.
type mutator struct {
	// readsPrometheuses: the decision reads the cluster's Prometheus
	// objects (monitors.autoSelect, the selection warning).
	readsPrometheuses bool
	// enrolled: enroll rules name the kind (pod owners and Services).
	enrolled bool
	// kindName is how enroll rules and warnings name the kind, when not
	// its kind (a declared kind whose name a built-in kind has).
	kindName string
	// template is where a pod owner keeps its pod template; nil for the
	// kinds that own no pods.
	template *podTemplate
	decide   func(p *Policy, kind string, s *objectShape, req MutationRequest) (Mutation, error)
}

// The API groups of the built-in kinds.
const (
	groupApps = "apps"
	groupCore = ""
)

// podOwner is the entry of a kind that owns pods through the template at
// path; updateAdds as in podTemplate.
func podOwner(path string, updateAdds bool) mutator {
	return mutator{enrolled: true, template: newPodTemplate(path, updateAdds), decide: (*Policy).enrollObject}
}

// The table's entries: one per way of deciding.
var (
	serviceEnrollment = mutator{enrolled: true, decide: (*Policy).enrollObject}
	monitorLabels     = mutator{readsPrometheuses: true, decide: (*Policy).labelMonitor}
	ruleLabels        = mutator{readsPrometheuses: true, decide: (*Policy).labelRule}
)

// What an UPDATE of a pod owner's template does (podTemplate.updateAdds).
const (
	// rollsOut: the controller replaces the pods (Deployment, StatefulSet,
	// DaemonSet), or the API server refuses the change (a Job's template
	// is immutable): only CREATE adds to the template.
	rollsOut = false
	// reachesTheNextPods: running pods are untouched and the next ones
	// are made from the new template (a CronJob's next Job).
	reachesTheNextPods = true
)

// mutations is the one dispatch table of the mutating side, by group and
// kind, beside the gate table (shared/STYLE.md 16): /mutate, check, audit
// and the reporter all decide through it, so a new kind is one entry here.
// The policy's declared kinds (its kinds section) are entries of the same
// shape, compiled with it.
var mutations = map[schema.GroupKind]mutator{
	{Group: groupApps, Kind: "Deployment"}:           podOwner("spec.template", rollsOut),
	{Group: groupApps, Kind: "StatefulSet"}:          podOwner("spec.template", rollsOut),
	{Group: groupApps, Kind: "DaemonSet"}:            podOwner("spec.template", rollsOut),
	{Group: groupBatch, Kind: "Job"}:                 podOwner("spec.template", rollsOut),
	{Group: groupBatch, Kind: "CronJob"}:             podOwner("spec.jobTemplate.spec.template", reachesTheNextPods),
	{Group: groupCore, Kind: "Service"}:              serviceEnrollment,
	{Group: groupMonitoring, Kind: "ServiceMonitor"}: monitorLabels,
	{Group: groupMonitoring, Kind: "PodMonitor"}:     monitorLabels,
	{Group: groupMonitoring, Kind: "Probe"}:          monitorLabels,
	{Group: groupMonitoring, Kind: "ScrapeConfig"}:   monitorLabels,
	{Group: groupMonitoring, Kind: "PrometheusRule"}: ruleLabels,
	// Labelled only when monitors.kinds lists it; selection is judged
	// against the cluster's Alertmanagers.
	{Group: groupMonitoring, Kind: "AlertmanagerConfig"}: monitorLabels,
}

// mutator is gk's entry: built in, or declared by the policy.
func (p *Policy) mutator(gk schema.GroupKind) (mutator, bool) {
	if m, ok := mutations[gk]; ok {
		return m, true
	}
	m, ok := p.declaredTable[gk]
	return m, ok
}

// Mutated reports whether a kind has an entry in the mutation table, built
// in or declared by the policy.
func (p *Policy) Mutated(gk schema.GroupKind) bool { _, ok := p.mutator(gk); return ok }

// ReadsPrometheuses reports whether the mutation of gk reads the cluster's
// Prometheus objects (so an adapter lists them only then).
func ReadsPrometheuses(gk schema.GroupKind) bool { return mutations[gk].readsPrometheuses }

// MutatedKinds lists the kinds of the mutation table, the built-in ones
// and the policy's declared ones, sorted by group then kind.
func (p *Policy) MutatedKinds() []schema.GroupKind {
	all := maps.Clone(mutations)
	maps.Copy(all, p.declaredTable)
	return sortedKinds(all)
}

// BuiltinMutatedKinds lists the built-in kinds of the mutation table,
// which every installation's webhook configuration names.
func BuiltinMutatedKinds() []schema.GroupKind { return sortedKinds(mutations) }

// PodOwner reports whether gk owns pods (a built-in or declared pod
// owner), and where its pod template is.
func (p *Policy) PodOwner(gk schema.GroupKind) (templatePath string, ok bool) {
	m, _ := p.mutator(gk)
	if m.template == nil {
		return "", false
	}
	return m.template.String(), true
}

// GatedKinds lists the kinds of the gate table, sorted by group then kind.
func GatedKinds() []schema.GroupKind { return sortedKinds(gates) }

func sortedKinds[V any](m map[schema.GroupKind]V) []schema.GroupKind {
	return slices.SortedFunc(maps.Keys(m), func(a, b schema.GroupKind) int {
		if c := strings.Compare(a.Group, b.Group); c != 0 {
			return c
		}
		return strings.Compare(a.Kind, b.Kind)
	})
}

// Mutate decides the mutation of one object of kind gk. It fails only when
// gk has no entry or the object (or a needed old object) cannot be decoded.
func (p *Policy) Mutate(gk schema.GroupKind, req MutationRequest) (Mutation, error) {
	m, ok := p.mutator(gk)
	if !ok {
		return Mutation{}, fmt.Errorf("no mutation for %s", gk)
	}
	s, err := decodeShape(req.Object, "object", m.template)
	if err != nil {
		return Mutation{}, err
	}
	kind := gk.Kind
	if m.kindName != "" {
		kind = m.kindName
	}
	return m.decide(p, kind, s, req)
}

// enrollObject is the entry of pod owners and Services: enrollment labels,
// pod template labels and scrape annotations, sticky on UPDATE.
func (p *Policy) enrollObject(kind string, s *objectShape, req MutationRequest) (Mutation, error) {
	er := EnrollRequest{Operation: req.Operation, Object: s.object(kind, req.Namespace.Name), Namespace: req.Namespace}
	if req.Operation == Update && p.NeedsOld(er.Object) {
		old, err := decodeShape(req.OldObject, "oldObject", s.templateAt)
		if err != nil {
			return Mutation{}, err
		}
		o := old.object(kind, req.Namespace.Name)
		er.Old = &o
	}
	return Mutation{Decision: p.Enroll(er), Object: er.Object, shape: s}, nil
}

// labelMonitor is the entry of ServiceMonitors, PodMonitors, Probes and
// ScrapeConfigs: monitors.labels and autoSelect, and a warning when no
// Prometheus will load the object even so.
func (p *Policy) labelMonitor(kind string, s *objectShape, req MutationRequest) (Mutation, error) {
	o := s.object(kind, req.Namespace.Name)
	m := Mutation{Decision: p.MonitorLabels(o, req.Namespace, req.Prometheuses), Object: o, shape: s}
	// An excluded namespace or an opted-out object gets nothing, warnings
	// included: the webhook configurations' selectors do not even call
	// promenroll for them.
	if _, excluded := p.Excluded(req.Namespace, o.Labels); !excluded {
		m.Decision.Warnings = append(m.Decision.Warnings, p.selectionWarnings(o, m.Decision, req)...)
	}
	return m, nil
}

// labelRule is labelMonitor for PrometheusRules, which also get their
// non-string label and annotation values coerced to strings.
func (p *Policy) labelRule(kind string, s *objectShape, req MutationRequest) (Mutation, error) {
	m, err := p.labelMonitor(kind, s, req)
	if _, excluded := p.Excluded(req.Namespace, m.Object.Labels); err != nil || excluded {
		return m, err
	}
	var raw struct {
		Spec RawRuleSpec `json:"spec"`
	}
	if sigsjson.UnmarshalCaseSensitivePreserveInts(req.Object, &raw) != nil {
		// Not a shape promenroll can fix; the API server's schema
		// validation reports it.
		return m, nil //nolint:nilerr // not promenroll's error to report
	}
	dry := p.RulesMode(req.Namespace) == ModeDryRun
	for _, c := range CoerceRuleValues(raw.Spec) {
		if dry {
			m.Decision.Warnings = append(m.Decision.Warnings, fmt.Sprintf("%swould coerce %s from %s to the string %q", DryRunPrefix, c.Field, c.From, c.To))
			continue
		}
		m.Coercions = append(m.Coercions, c)
		m.Decision.Warnings = append(m.Decision.Warnings, fmt.Sprintf("%s was %s, not a string; promenroll set it to %q", c.Field, c.From, c.To))
	}
	return m, nil
}

// NotLoadedWarning starts the warning that no Prometheus will load a
// monitor or rule (its kind follows), NotLoadedByAlertmanagerWarning that no
// Alertmanager will load an AlertmanagerConfig.
const (
	NotLoadedWarning               = "no Prometheus will load this "
	NotLoadedByAlertmanagerWarning = "no Alertmanager will load this "
)

// IsNotLoadedWarning reports whether w is one of them.
func IsNotLoadedWarning(w string) bool {
	return strings.HasPrefix(w, NotLoadedWarning) || strings.HasPrefix(w, NotLoadedByAlertmanagerWarning)
}

// selectionWarnings flags an object no Prometheus will load, with the
// labels it will have after this admission, judged by the Prometheus
// objects' selectors. Nothing is said when the cluster has no Prometheus
// objects; when they could not be read, a warning says what was skipped.
func (p *Policy) selectionWarnings(o Object, d Decision, req MutationRequest) []string {
	if req.PrometheusesErr != nil {
		if _, auto := p.autoSelectFor(o.Kind); p.monitors.unselected == LevelOff && auto == "" {
			return nil
		}
		return []string{fmt.Sprintf("promenroll could not read the cluster's %s objects (%v): monitors.autoSelect and the check that a %s loads this %s were skipped", LoaderNoun(o.Kind), req.PrometheusesErr, LoaderNoun(o.Kind), o.Kind)}
	}
	if len(req.Prometheuses) == 0 || !p.UnselectedWarns() {
		return nil
	}
	after := make(map[string]string, len(o.Labels)+len(d.Changes))
	maps.Copy(after, o.Labels)
	for _, c := range d.Enforced() {
		after[c.Key] = c.Value
	}
	o.Labels = after
	why := WhyNotSelected(req.Prometheuses, o, req.Namespace)
	if why == "" {
		return nil
	}
	lead := NotLoadedWarning
	if LoaderNoun(o.Kind) == KindAlertmanager {
		lead = NotLoadedByAlertmanagerWarning
	}
	return []string{fmt.Sprintf("%s%s: %s", lead, o.Kind, why)}
}
