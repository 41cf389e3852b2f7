package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime/schema"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/policy"
)

// Mutator is the /mutate handler: it adapts admission requests to the
// policy's mutation table (enrollment labels for workloads and Services,
// selector labels for monitors and rules, string coercion of
// PrometheusRule values).
type Mutator struct {
	Policies   Policies
	Namespaces clusterstate.NamespaceGetter
	// Prometheuses, if set, lets promenroll add monitors.autoSelect's
	// labels and warn about monitors and rules no Prometheus will load.
	Prometheuses clusterstate.PrometheusLister
	Metrics      *Metrics

	// autoSelectMissing remembers the autoSelect targets already logged as
	// missing, per policy generation, so the log says it once.
	autoSelectMissing sync.Map
}

var _ admission.Handler = (*Mutator)(nil)

// Handle implements admission.Handler.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return instrumented(ctx, req, m.Metrics, "mutate", func() outcome { return m.decide(ctx, req) })
}

// decide is decode → look up → decide → respond, on one policy snapshot.
func (m *Mutator) decide(ctx context.Context, req admission.Request) outcome {
	if out, done := screen(req); done {
		return out
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	pol := m.Policies.Policy()
	if !pol.Mutated(gk) {
		return skip(fmt.Sprintf("kind %s is not handled by /mutate: check the webhook configuration's rules and the policy's kinds", gvkString(req)))
	}
	ns, err := lookupNamespace(ctx, m.Namespaces, m.Metrics, req)
	if err != nil {
		return errored(http.StatusInternalServerError, err)
	}
	mr := policy.MutationRequest{Operation: policy.Operation(req.Operation), Object: req.Object.Raw, OldObject: req.OldObject.Raw, Namespace: ns}
	if policy.ReadsPrometheuses(gk) && m.Prometheuses != nil {
		mr.Prometheuses, mr.PrometheusesErr = m.Prometheuses.Prometheuses(ctx)
		if mr.PrometheusesErr != nil {
			m.Metrics.PrometheusErrors.Inc()
			logf.FromContext(ctx).Error(mr.PrometheusesErr, "cannot list the cluster's Prometheus objects: autoSelect and the selection warning are skipped")
		} else {
			m.logMissingAutoSelect(ctx, pol, mr.Prometheuses)
		}
	}
	mu, err := pol.Mutate(gk, mr)
	if err != nil {
		return errored(http.StatusBadRequest, err)
	}
	return mutationOutcome(mu, m.Metrics, req.Kind.Kind)
}

// mutationOutcome turns a mutation into a response: the enforced changes
// as a patch, the dry-run ones and every skip as warnings.
func mutationOutcome(mu policy.Mutation, metrics *Metrics, kind string) outcome {
	enforced := mu.Enforced()
	out := outcome{rules: mu.Matched, reason: mu.Reason, changes: describeChanges(mu.Object, mu.Changes), mode: mu.Mode(), patch: mu.Patch()}
	warnings := policy.LimitWarnings(mu.Warnings())
	switch {
	case len(out.patch) > 0:
		out.resp, out.decision = admission.Allowed(""), "patch"
	case len(warnings) > 0:
		out.resp, out.decision = admission.Allowed(""), "warn"
	default:
		out.resp, out.decision = admission.Allowed(mu.Reason), "allow"
	}
	out.resp.Warnings = warnings
	if dry := mu.DryRun(); len(dry) > 0 {
		out.resp.AuditAnnotations = map[string]string{"dry-run": describeChanges(mu.Object, dry)}
	}
	if len(enforced) > 0 {
		if out.resp.AuditAnnotations == nil {
			out.resp.AuditAnnotations = map[string]string{}
		}
		out.resp.AuditAnnotations["labels-added"] = describeChanges(mu.Object, enforced)
	}
	for _, c := range mu.Changes {
		metrics.LabelsInjected.WithLabelValues(kind, string(c.Target), c.Rule, string(c.Mode)).Inc()
	}
	metrics.LabelsCoerced.Add(float64(len(mu.Coercions)))
	return out
}

// logMissingAutoSelect logs, once per policy generation, that the
// Prometheus monitors.autoSelect names is not in the cluster (yet).
func (m *Mutator) logMissingAutoSelect(ctx context.Context, pol *policy.Policy, proms []policy.PrometheusSelectors) {
	ns, name := pol.AutoSelectTarget()
	if name == "" {
		return
	}
	for _, p := range proms {
		if p.Kind != policy.KindAlertmanager && p.Namespace == ns && p.Name == name {
			return
		}
	}
	if _, logged := m.autoSelectMissing.LoadOrStore(pol.Generation+"/"+ns+"/"+name, true); !logged {
		logf.FromContext(ctx).Info("monitors.autoSelect: no such Prometheus in the cluster (yet); its selector's labels are not added until it exists", "prometheus", ns+"/"+name)
	}
}

func describeChanges(o policy.Object, cs []policy.LabelChange) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(o.Field(c.Target))
		b.WriteByte(' ')
		b.WriteString(c.Key)
		b.WriteByte('=')
		b.WriteString(c.Value)
	}
	return b.String()
}
