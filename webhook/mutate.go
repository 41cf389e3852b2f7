package webhook

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/policy"
)

// API groups of the kinds promenroll handles.
const (
	groupApps       = "apps"
	groupCore       = ""
	groupMonitoring = "monitoring.coreos.com"
)

// Mutator is the /mutate handler: enrollment labels for workloads and
// Services, selector labels for ServiceMonitors, PodMonitors and
// PrometheusRules, and string coercion of PrometheusRule labels.
type Mutator struct {
	Policies   *PolicyStore
	Namespaces NamespaceGetter
	Metrics    *Metrics
}

var _ admission.Handler = (*Mutator)(nil)

// Handle implements admission.Handler.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return instrumented(ctx, req, m.Metrics, "mutate", func() outcome { return m.decide(ctx, req) })
}

func (m *Mutator) decide(ctx context.Context, req admission.Request) outcome {
	if out, done := screen(req); done {
		return out
	}
	g, kind := req.Kind.Group, req.Kind.Kind
	switch {
	case g == groupApps && slices.Contains(policy.WorkloadKinds, kind), g == groupCore && kind == "Service":
		return m.enroll(ctx, req)
	case g == groupMonitoring && slices.Contains(policy.MonitorKinds, kind):
		return m.monitor(ctx, req)
	default:
		return skip(fmt.Sprintf("kind %s is not handled by /mutate: check the webhook configuration's rules", gvkString(req)))
	}
}

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
	if req.Operation == admissionv1.Update {
		old, err := decodeShape(req.OldObject.Raw, "oldObject")
		if err != nil {
			return errored(http.StatusBadRequest, err)
		}
		o := old.object(req.Kind.Kind, req.Namespace)
		er.Old = &o
	}
	d := m.Policies.Policy().Enroll(er)
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
		out.resp, out.decision = admission.Patched(""), "patch"
		out.resp.Patches = ops
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

// decisionMode is the mode a label decision is reported under: enforce if
// anything is applied, dry-run if it only reports.
func decisionMode(d policy.Decision) policy.Mode {
	if len(d.Enforced()) > 0 {
		return policy.ModeEnforce
	}
	if len(d.DryRun()) > 0 || slices.ContainsFunc(d.Warnings, func(w string) bool { return strings.HasPrefix(w, policy.DryRunPrefix) }) {
		return policy.ModeDryRun
	}
	return policy.ModeEnforce
}

func describeChanges(cs []policy.LabelChange) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %s=%s", c.Target, c.Key, c.Value))
	}
	return strings.Join(parts, ", ")
}

func (m *Mutator) namespace(ctx context.Context, req admission.Request) (policy.Namespace, error) {
	return lookupNamespace(ctx, m.Namespaces, m.Metrics, req)
}
