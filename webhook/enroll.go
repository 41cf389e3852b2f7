package webhook

import (
	"context"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/policy"
)

// objectAndNamespace decodes the request's object and reads its namespace;
// on failure the outcome to answer with is returned instead.
func (m *Mutator) objectAndNamespace(ctx context.Context, req admission.Request) (*objectShape, policy.Namespace, *outcome) {
	obj, err := decodeShape(req.Object.Raw, "object")
	if err != nil {
		out := errored(http.StatusBadRequest, err)
		return nil, policy.Namespace{}, &out
	}
	ns, err := lookupNamespace(ctx, m.Namespaces, m.Metrics, req)
	if err != nil {
		out := errored(http.StatusInternalServerError, err)
		return nil, policy.Namespace{}, &out
	}
	return obj, ns, nil
}

func (m *Mutator) enroll(ctx context.Context, req admission.Request) outcome {
	obj, ns, failed := m.objectAndNamespace(ctx, req)
	if failed != nil {
		return *failed
	}
	er := policy.EnrollRequest{
		Operation: policy.Operation(req.Operation),
		Object:    obj.object(req.Kind.Kind, req.Namespace),
		Namespace: ns,
	}
	p := m.Policies.Policy()
	if req.Operation == admissionv1.Update && p.NeedsOld(er.Object) {
		old, err := decodeShape(req.OldObject.Raw, "oldObject")
		if err != nil {
			return errored(http.StatusBadRequest, err)
		}
		o := old.object(req.Kind.Kind, req.Namespace)
		er.Old = &o
	}
	d := p.Enroll(er)
	return labelOutcome(obj, d, m.Metrics, req.Kind.Kind)
}

// labelOutcome turns a label decision into a response: the enforced changes
// as a patch, the dry-run ones and every skip as warnings.
func labelOutcome(obj *objectShape, d policy.Decision, metrics *Metrics, kind string) outcome {
	enforced := d.Enforced()
	out := outcome{rules: d.Matched, reason: d.Reason, changes: d.Changes, mode: decisionMode(d)}
	ops := labelPatch(obj, enforced)
	warnings := policy.LimitWarnings(policy.WarningsFor(d))
	switch {
	case len(ops) > 0:
		out.resp, out.decision = admission.Allowed(""), "patch"
		out.patch = ops
	case len(d.DryRun()) > 0 || len(warnings) > 0:
		out.resp, out.decision = admission.Allowed(""), "warn"
	default:
		out.resp, out.decision = admission.Allowed(d.Reason), "allow"
	}
	out.resp.Warnings = warnings
	if dry := d.DryRun(); len(dry) > 0 {
		out.resp.AuditAnnotations = map[string]string{"dry-run": describeChanges(dry)}
	}
	if len(enforced) > 0 {
		if out.resp.AuditAnnotations == nil {
			out.resp.AuditAnnotations = map[string]string{}
		}
		out.resp.AuditAnnotations["labels-added"] = describeChanges(enforced)
	}
	for _, c := range d.Changes {
		metrics.LabelsInjected.WithLabelValues(kind, string(c.Target), c.Rule, string(c.Mode)).Inc()
	}
	return out
}
