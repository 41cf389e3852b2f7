package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/policy"
)

// outcome is what a handler decided, before it becomes a response.
type outcome struct {
	resp     admission.Response
	decision string // patch, allow, deny, warn, skip, error
	mode     policy.Mode
	rules    []string
	reason   string
	// changes describes the labels added (or, in dry-run, not), for the log.
	changes string
	// patch is encoded into resp by instrumented.
	patch []policy.PatchOp
}

// encodePatch puts out's operations in its response as a JSON Patch.
// Responses carry the encoded patch (admission.Response.Patch) rather than
// Patches: encoding jsonpatch.JsonPatchOperation goes through its
// MarshalJSON and then encoding/json's compaction of its output, a tenth of
// a CREATE's cost.
func (out *outcome) encodePatch() error {
	if len(out.patch) == 0 {
		return nil
	}
	b, err := json.Marshal(out.patch)
	if err != nil {
		return fmt.Errorf("encode the patch: %w", err)
	}
	pt := admissionv1.PatchTypeJSONPatch
	out.resp.Patch, out.resp.PatchType = b, &pt
	return nil
}

// lookupNamespace reads the request namespace's labels and annotations; a
// failure is an infrastructure error for the failurePolicy to handle.
func lookupNamespace(ctx context.Context, g clusterstate.NamespaceGetter, metrics *Metrics, req admission.Request) (policy.Namespace, error) {
	if req.Namespace == "" {
		return policy.Namespace{}, nil
	}
	ns, err := g.Namespace(ctx, req.Namespace)
	if err != nil {
		metrics.NamespaceErrors.Inc()
		return ns, fmt.Errorf("promenroll could not read namespace %s to apply its policy (%w); the webhook's failurePolicy applies, retry shortly", req.Namespace, err)
	}
	return ns, nil
}

// screen answers requests no handler should look at: a body that is not an
// admission request, and operations other than CREATE and UPDATE.
func screen(req admission.Request) (outcome, bool) {
	if req.UID == "" || req.Kind.Kind == "" {
		return errored(http.StatusBadRequest, errors.New("the body is not an AdmissionReview request: request.uid and request.kind are required")), true
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return skip(fmt.Sprintf("operation %s is not handled", req.Operation)), true
	}
	return outcome{}, false
}

func gvkString(req admission.Request) string {
	if req.Kind.Group == "" {
		return req.Kind.Version + "/" + req.Kind.Kind
	}
	return req.Kind.Group + "/" + req.Kind.Version + "/" + req.Kind.Kind
}

func skip(reason string) outcome {
	return outcome{resp: admission.Allowed(reason), decision: "skip", reason: reason}
}

func errored(code int32, err error) outcome {
	return outcome{resp: admission.Errored(code, err), decision: "error", reason: err.Error()}
}

// instrumented runs decide for one request of the named webhook, counting
// and timing it, and turns the outcome into the response.
func instrumented(ctx context.Context, req admission.Request, metrics *Metrics, name string, decide func() outcome) admission.Response {
	start := time.Now()
	metrics.Requests.WithLabelValues(name, req.Kind.Kind, string(req.Operation)).Inc()
	out := decide()
	if err := out.encodePatch(); err != nil {
		out = errored(http.StatusInternalServerError, err)
	}
	metrics.Duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	return finish(ctx, req, metrics, start, out)
}

// finish counts and logs the decision: one structured line per admission
// request, never the object itself.
func finish(ctx context.Context, req admission.Request, metrics *Metrics, start time.Time, out outcome) admission.Response {
	mode := out.mode
	if mode == "" {
		mode = policy.ModeEnforce
	}
	rules := out.rules
	if len(rules) == 0 {
		rules = []string{""}
	}
	for _, r := range rules {
		metrics.Decisions.WithLabelValues(req.Kind.Kind, string(req.Operation), out.decision, string(mode), r).Inc()
	}
	name := req.Name
	log := logf.FromContext(ctx)
	kv := []any{
		"uid", req.UID, "kind", req.Kind.Kind, "operation", req.Operation,
		"namespace", req.Namespace, "name", name, "user", req.UserInfo.Username,
		"decision", out.decision, "mode", mode, "dryRun", req.DryRun != nil && *req.DryRun,
		"duration", time.Since(start).String(),
	}
	if len(out.rules) > 0 {
		kv = append(kv, "rules", out.rules)
	}
	if out.reason != "" {
		kv = append(kv, "reason", out.reason)
	}
	if out.changes != "" {
		kv = append(kv, "labels", out.changes)
	}
	if len(out.resp.Warnings) > 0 {
		kv = append(kv, "warnings", len(out.resp.Warnings))
	}
	log.Info("admission decision", kv...)
	return out.resp
}
