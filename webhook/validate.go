package webhook

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/policy"
)

// maxListedProblems is how many problems a denial's message lists before
// "and N more": kubectl and Argo CD show only the message, so it must name
// the problems, but a 300-problem wall helps nobody. Every problem is still
// a cause in the status details.
const maxListedProblems = 8

// maxProblemChars caps one problem in the message (a PromQL error quotes
// the expression).
const maxProblemChars = 400

// Validator is the /validate handler: the PrometheusRule gate and the
// monitor gate.
type Validator struct {
	Policies   Policies
	Namespaces clusterstate.NamespaceGetter
	// Services backs the monitor gate's warnings; nil skips them.
	Services policy.ServiceReader
	// Workloads backs the PodMonitor warnings; nil skips them.
	Workloads policy.WorkloadReader
	// Secrets backs the AlertmanagerConfig gate's warnings about missing
	// Secrets; nil skips them.
	Secrets policy.SecretReader
	// Prometheuses backs monitors.unselected: deny and the timeout-vs-
	// scrapeInterval warning; nil skips them.
	Prometheuses clusterstate.PrometheusLister
	Metrics      *Metrics
}

var _ admission.Handler = (*Validator)(nil)

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	return instrumented(ctx, req, v.Metrics, "validate", func() outcome { return v.decide(ctx, req) })
}

func (v *Validator) decide(ctx context.Context, req admission.Request) outcome {
	if out, done := screen(req); done {
		return out
	}
	gk := schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
	if !policy.Gated(gk) {
		return skip(fmt.Sprintf("kind %s is not handled by /validate: check the webhook configuration's rules", gvkString(req)))
	}
	if len(req.Object.Raw) == 0 {
		return errored(http.StatusBadRequest, fmt.Errorf("the admission request has no object"))
	}
	pol := v.Policies.Policy()
	ns, err := lookupNamespace(ctx, v.Namespaces, v.Metrics, req)
	if err != nil {
		return errored(http.StatusInternalServerError, err)
	}
	cs := policy.ClusterState{Services: v.Services, Workloads: v.Workloads, Secrets: v.Secrets}
	if v.Prometheuses != nil {
		// From the informer cache. Without them the timeout warning is
		// skipped; monitors.unselected: deny cannot be judged, and
		// admitting would fail open, so the request fails instead.
		if cs.Prometheuses, err = v.Prometheuses.Prometheuses(ctx); err != nil {
			v.Metrics.PrometheusErrors.Inc()
			logf.FromContext(ctx).Error(err, "cannot list the cluster's Prometheus objects")
			if pol.UnselectedDenies(gk.Kind) {
				return errored(http.StatusInternalServerError, fmt.Errorf("promenroll could not read the cluster's Prometheus objects to apply monitors.unselected: deny (%w); the webhook's failurePolicy applies, retry shortly", err))
			}
		}
	}
	res, err := pol.Gate(gk, req.Object.Raw, ns, cs)
	if err != nil {
		st := apierrors.NewBadRequest(fmt.Sprintf("%s %s/%s cannot be decoded: %v", gk.Kind, req.Namespace, req.Name, err)).ErrStatus
		return outcome{resp: admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &st}}, decision: "deny", reason: st.Message}
	}
	if res.Name == "" {
		res.Name = req.Name
	}
	return gateOutcome(gk, res, v.Metrics)
}

// gateOutcome turns a gate's report into a response: a 422 Invalid denial
// whose message lists the problems, or an admission with warnings.
func gateOutcome(gk schema.GroupKind, res policy.GateResult, metrics *Metrics) outcome {
	rep, name := res.Report, res.Name
	out := outcome{mode: rep.Mode, reason: rep.Reason}
	if rep.Reason != "" {
		out.resp, out.decision = admission.Allowed(rep.Reason), "skip"
		return out
	}
	for _, f := range rep.Findings {
		metrics.GateFindings.WithLabelValues(gk.Kind, f.Check, string(f.Level), string(rep.Mode)).Inc()
	}
	denials, warns := rep.Denials(), rep.Warnings()
	var warnings []string
	for _, e := range warns {
		warnings = append(warnings, e.Error())
	}
	switch {
	case len(denials) > 0 && rep.Mode == policy.ModeEnforce:
		st := apierrors.NewInvalid(gk, name, denials).ErrStatus
		st.Message = denialMessage(gk.Kind, name, denials)
		out.resp = admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &st}}
		out.decision, out.reason = "deny", st.Message
	case len(denials) > 0:
		dry := make([]string, 0, len(denials)+1)
		dry = append(dry, fmt.Sprintf("%swould deny %s %s: %d problem(s)", policy.DryRunPrefix, gk.Kind, name, len(denials)))
		for _, e := range denials {
			dry = append(dry, policy.DryRunPrefix+e.Error())
		}
		warnings = append(dry, warnings...)
		out.resp, out.decision = admission.Allowed(""), "warn"
		out.resp.AuditAnnotations = map[string]string{"dry-run": truncate(denialMessage(gk.Kind, name, denials), 1024)}
	case len(warnings) > 0:
		out.resp, out.decision = admission.Allowed(""), "warn"
	default:
		out.resp, out.decision = admission.Allowed(fmt.Sprintf("%d %s valid", rep.Checked, res.Noun(gk))), "allow"
	}
	out.resp.Warnings = policy.LimitWarnings(warnings)
	return out
}

// denialMessage is the top-level message of a denial. kubectl and Argo CD
// print only this, so it lists the problems (at most maxListedProblems).
func denialMessage(kind, name string, errs field.ErrorList) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q is invalid: %d problem(s): ", kind, name, len(errs))
	for i, e := range errs {
		if i == maxListedProblems {
			fmt.Fprintf(&b, "; and %d more", len(errs)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(truncate(e.Error(), maxProblemChars))
	}
	return b.String()
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}
