package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"

	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/promenroll/promenroll/policy"
)

// monitor labels a ServiceMonitor, PodMonitor or PrometheusRule with the
// policy's monitors.labels, warns when no Prometheus in the cluster will
// load it even so, and coerces a PrometheusRule's non-string label and
// annotation values to strings.
func (m *Mutator) monitor(ctx context.Context, req admission.Request) outcome {
	obj, ns, failed := m.objectAndNamespace(ctx, req)
	if failed != nil {
		return *failed
	}
	pol := m.Policies.Policy()
	o := obj.object(req.Kind.Kind, req.Namespace)
	var proms []policy.PrometheusSelectors
	if m.Prometheuses != nil {
		// From the informer cache; an error means none to judge with.
		proms, _ = m.Prometheuses.Prometheuses(ctx)
	}
	m.logMissingAutoSelect(ctx, pol, proms)
	d := pol.MonitorLabels(o, ns, proms)
	out := labelOutcome(obj, d, m.Metrics, req.Kind.Kind)
	// All warnings are limited together: label, selection and coercion ones.
	warnings := policy.WarningsFor(d)
	if _, excluded := pol.ExcludedNamespace(ns); !excluded {
		warnings = append(warnings, m.selectionWarnings(proms, o, d, ns)...)
		if req.Kind.Kind == "PrometheusRule" {
			warnings = append(warnings, m.coerce(req, pol.RulesMode(ns), &out)...)
		}
	}
	out.resp.Warnings = policy.LimitWarnings(warnings)
	if out.decision == "allow" && len(out.resp.Warnings) > 0 {
		out.decision = "warn"
	}
	return out
}

// selectionWarnings flags an object no Prometheus will load, with the
// labels it will have after this admission, judged by the Prometheus
// objects' selectors. Nothing is said when the cluster has no Prometheus
// objects (or promenroll cannot see them).
func (m *Mutator) selectionWarnings(proms []policy.PrometheusSelectors, o policy.Object, d policy.Decision, ns policy.Namespace) []string {
	if len(proms) == 0 || !m.Policies.Policy().UnselectedWarns() {
		return nil
	}
	after := make(map[string]string, len(o.Labels)+len(d.Changes))
	for k, v := range o.Labels {
		after[k] = v
	}
	for _, c := range d.Enforced() {
		after[c.Key] = c.Value
	}
	o.Labels = after
	why := policy.WhyNotSelected(proms, o, ns)
	if why == "" {
		return nil
	}
	return []string{fmt.Sprintf("no Prometheus will load this %s: %s", o.Kind, why)}
}

// logMissingAutoSelect logs, once per policy generation, that the
// Prometheus monitors.autoSelect names is not in the cluster (yet).
func (m *Mutator) logMissingAutoSelect(ctx context.Context, pol *policy.Policy, proms []policy.PrometheusSelectors) {
	ns, name := pol.AutoSelectTarget()
	if name == "" || slices.ContainsFunc(proms, func(p policy.PrometheusSelectors) bool { return p.Namespace == ns && p.Name == name }) {
		return
	}
	if _, logged := m.autoSelectMissing.LoadOrStore(pol.Generation+"/"+ns+"/"+name, true); !logged {
		logf.FromContext(ctx).Info("monitors.autoSelect: no such Prometheus in the cluster (yet); its selector's labels are not added until it exists", "prometheus", ns+"/"+name)
	}
}

// coerce adds replace operations for non-string rule label and annotation
// values (or, in dry-run, only says it would) and returns the warnings.
func (m *Mutator) coerce(req admission.Request, mode policy.Mode, out *outcome) []string {
	var raw struct {
		Spec policy.RawRuleSpec `json:"spec"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, &raw); err != nil {
		// Not a shape promenroll can fix; the API server's schema
		// validation reports it.
		return nil
	}
	coercions := policy.CoerceRuleValues(raw.Spec)
	var warnings []string
	for _, c := range coercions {
		if mode == policy.ModeDryRun {
			warnings = append(warnings, fmt.Sprintf("%swould coerce %s from %s to the string %q", policy.DryRunPrefix, c.Field, c.From, c.To))
			continue
		}
		out.patch = append(out.patch, patchOp{Op: "replace", Path: jsonPointer(c.Path), Value: c.To})
		warnings = append(warnings, fmt.Sprintf("%s was %s, not a string; promenroll set it to %q", c.Field, c.From, c.To))
	}
	if len(coercions) > 0 && mode != policy.ModeDryRun {
		m.Metrics.LabelsCoerced.Add(float64(len(coercions)))
		out.decision = "patch"
		out.resp.Allowed = true
	}
	return warnings
}

func jsonPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(t))
	}
	return b.String()
}
