package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
)

// TestReviewsSpeakBothVersions: the AdmissionReview is answered in the
// version it came in, and what is not an AdmissionReview is refused with
// the cause.
func TestReviewsSpeakBothVersions(t *testing.T) {
	h := Endpoint("mutate", &Mutator{Policies: benchPolicy(t), Namespaces: testNamespaces, Metrics: NewMetrics(nil)}, nil)
	create := review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil)
	v1beta1 := bytes.Replace(create, []byte(`"apiVersion":"admission.k8s.io/v1"`), []byte(`"apiVersion":"admission.k8s.io/v1beta1"`), 1)
	for _, c := range []struct {
		name, contentType string
		body              []byte
		wantVersion       string
		wantCode          int32 // of the response's result
		wantMessage       string
		wantPatch         bool
	}{
		{"v1", "application/json", create, "admission.k8s.io/v1", 200, "", true},
		{"v1beta1", "application/json", v1beta1, "admission.k8s.io/v1beta1", 200, "", true},
		{"no type", "application/json", bytes.Replace(create, []byte(`"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",`), nil, 1), "admission.k8s.io/v1", 200, "", true},
		{"another kind", "application/json", bytes.Replace(create, []byte(`"kind":"AdmissionReview"`), []byte(`"kind":"Pod"`), 1), "admission.k8s.io/v1", 400, `kind "Pod": expected AdmissionReview`, false},
		{"another version", "application/json", bytes.Replace(create, []byte(`admission.k8s.io/v1"`), []byte(`admission.k8s.io/v2"`), 1), "admission.k8s.io/v1", 400, `apiVersion "admission.k8s.io/v2"`, false},
		{"YAML", "application/yaml", create, "admission.k8s.io/v1", 400, "expected application/json", false},
		{"not JSON", "application/json", []byte(`{"request":`), "admission.k8s.io/v1", 400, "decode the AdmissionReview", false},
		{"no request", "application/json", []byte(`{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":null}`), "admission.k8s.io/v1", 400, "request.uid and request.kind are required", false},
		{"too large", "application/json", append(bytes.Repeat([]byte(" "), maxReviewBytes), create...), "admission.k8s.io/v1", 413, "too large", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(c.body))
			req.Header.Set("Content-Type", c.contentType)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var ar admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.Response == nil {
				t.Fatalf("not an AdmissionReview response: %v: %s", err, rec.Body)
			}
			if ar.APIVersion != c.wantVersion || ar.Kind != "AdmissionReview" {
				t.Errorf("answered as %s %s, want %s AdmissionReview", ar.APIVersion, ar.Kind, c.wantVersion)
			}
			if ar.Response.Result == nil || ar.Response.Result.Code != c.wantCode || !strings.Contains(ar.Response.Result.Message, c.wantMessage) {
				t.Errorf("result %+v, want code %d with %q", ar.Response.Result, c.wantCode, c.wantMessage)
			}
			if got := len(ar.Response.Patch) > 0; got != c.wantPatch {
				t.Errorf("patch %s, want one: %v", ar.Response.Patch, c.wantPatch)
			}
			if c.wantCode == 200 && ar.Response.UID != "uid-1" {
				t.Errorf("uid %q, want the request's", ar.Response.UID)
			}
		})
	}
}
