package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/policy"
)

// Paths the webhook configurations in deploy/ call.
const (
	MutatePath   = "/mutate"
	ValidatePath = "/validate"
)

// Policies gives the policy in force (package policystore's Store, which
// reloads it); a request reads it once and decides on that snapshot.
type Policies interface {
	Policy() *policy.Policy
}

// maxReviewBytes bounds an AdmissionReview body, as controller-runtime
// does: two objects of at most 3 MiB (an UPDATE) and the rest.
const maxReviewBytes = 7 << 20

// Endpoint is h served as serve serves it: large requests bounded by l
// (nil: unbounded) before their bodies are read, the AdmissionReview
// decoded once (reviews), and a bare request logger (the one decision line
// per request carries the request's fields itself: uid, kind, user, ...).
// serve, the load harness and the tests all wire handlers through it.
func Endpoint(name string, h admission.Handler, l *limit.Limiter) http.Handler {
	return l.Wrap(name, reviews(&admission.Webhook{Handler: h, LogConstructor: bareLogger}))
}

func bareLogger(base logr.Logger, _ *admission.Request) logr.Logger { return base }

// reviews serves wh over HTTP as the API server calls it: an AdmissionReview
// (admission.k8s.io/v1 or v1beta1) in, the same version out.
//
// It replaces controller-runtime's admission.Webhook.ServeHTTP, whose
// universal deserializer decodes the whole body twice (once with
// encoding/json only to find its apiVersion and kind): about a tenth of a
// large rule's validation and of an UPDATE's cost. The body is decoded
// once, the same way (case-sensitive, unknown fields ignored), and wh.Handle
// still does the rest (request logger, panic recovery, response completion).
func reviews(wh *admission.Webhook) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		version, req, code, err := decodeReview(r)
		if err != nil {
			logf.Log.WithName("admission").Error(err, "bad admission request", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeReview(w, version, admission.Errored(code, err))
			return
		}
		writeReview(w, version, wh.Handle(r.Context(), req))
	})
}

// decodeReview reads the request's AdmissionReview; on failure, the HTTP
// status for the error response.
func decodeReview(r *http.Request) (string, admission.Request, int32, error) {
	version := admissionv1.SchemeGroupVersion.String()
	if r.Body == nil || r.Body == http.NoBody {
		return version, admission.Request{}, http.StatusBadRequest, errors.New("request body is empty")
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		return version, admission.Request{}, http.StatusBadRequest, fmt.Errorf("contentType=%s, expected application/json", ct)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes+1))
	if err != nil {
		return version, admission.Request{}, http.StatusBadRequest, fmt.Errorf("read the request body: %w", err)
	}
	if len(body) > maxReviewBytes {
		return version, admission.Request{}, http.StatusRequestEntityTooLarge, fmt.Errorf("request entity is too large; limit is %d bytes", maxReviewBytes)
	}
	var review struct {
		metav1.TypeMeta `json:",inline"`
		Request         *admissionv1.AdmissionRequest `json:"request"`
	}
	var req admission.Request
	review.Request = &req.AdmissionRequest
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return version, req, http.StatusBadRequest, fmt.Errorf("decode the AdmissionReview: %w", err)
	}
	switch {
	case review.Kind != "" && review.Kind != "AdmissionReview":
		return version, req, http.StatusBadRequest, fmt.Errorf("kind %q: expected AdmissionReview", review.Kind)
	case review.APIVersion == "":
	case review.APIVersion == admissionv1.SchemeGroupVersion.String(), review.APIVersion == admissionv1beta1.SchemeGroupVersion.String():
		version = review.APIVersion
	default:
		return version, req, http.StatusBadRequest, fmt.Errorf("apiVersion %q: expected %s or %s", review.APIVersion, admissionv1.SchemeGroupVersion, admissionv1beta1.SchemeGroupVersion)
	}
	if review.Request == nil { // "request": null
		req = admission.Request{}
	}
	return version, req, 0, nil
}

// writeReview answers with resp in an AdmissionReview of version (the two
// versions' responses are the same).
func writeReview(w http.ResponseWriter, version string, resp admission.Response) {
	w.Header().Set("Content-Type", "application/json")
	ar := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: version, Kind: "AdmissionReview"}, Response: &resp.AdmissionResponse}
	if err := json.NewEncoder(w).Encode(ar); err != nil {
		logf.Log.WithName("admission").Error(err, "unable to write the response")
	}
}
