package webhook

import (
	"context"
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/promenroll/promenroll/policy"
)

// monitor labels a ServiceMonitor, PodMonitor or PrometheusRule with the
// policy's monitors.labels, and coerces a PrometheusRule's non-string label
// and annotation values to strings.
func (m *Mutator) monitor(ctx context.Context, req admission.Request) outcome {
	obj, ns, failed := m.objectAndNamespace(ctx, req)
	if failed != nil {
		return *failed
	}
	pol := m.Policies.Policy()
	d := pol.MonitorLabels(obj.object(req.Kind.Kind, req.Namespace), ns)
	out := labelOutcome(obj, d, m.Metrics, req.Kind.Kind)
	if req.Kind.Kind != "PrometheusRule" {
		return out
	}

	var raw struct {
		Spec policy.RawRuleSpec `json:"spec"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(req.Object.Raw, &raw); err != nil {
		// Not a shape promenroll can fix; the API server's schema
		// validation reports it.
		return out
	}
	coercions := policy.CoerceRuleValues(raw.Spec)
	if len(coercions) == 0 {
		return out
	}
	if _, excluded := pol.ExcludedNamespace(ns); excluded {
		return out
	}
	// All warnings are limited together, label and coercion ones.
	warnings := policy.WarningsFor(d)
	if pol.RulesMode(ns) == policy.ModeDryRun {
		for _, c := range coercions {
			warnings = append(warnings, fmt.Sprintf("%swould coerce %s from %s to the string %q", policy.DryRunPrefix, c.Field, c.From, c.To))
		}
		out.resp.Warnings = policy.LimitWarnings(warnings)
		if out.decision == "allow" {
			out.decision = "warn"
		}
		return out
	}
	for _, c := range coercions {
		out.resp.Patches = append(out.resp.Patches, jsonpatch.NewOperation("replace", jsonPointer(c.Path), c.To))
		warnings = append(warnings, fmt.Sprintf("%s was %s, not a string; promenroll set it to %q", c.Field, c.From, c.To))
	}
	out.resp.Warnings = policy.LimitWarnings(warnings)
	m.Metrics.LabelsCoerced.Add(float64(len(coercions)))
	out.decision = "patch"
	out.resp.Allowed = true
	return out
}

func jsonPointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(t))
	}
	return b.String()
}
