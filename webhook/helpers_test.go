package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/policy"
)

const testPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
enroll:
- name: workloads
  kinds: [Deployment, StatefulSet, DaemonSet]
  labels:
    monitoring.promenroll.io/scrape: "true"
    team: "{namespaceLabel:team}"
  podTemplateLabels:
    monitoring.promenroll.io/pod-scrape: "true"
- name: services
  kinds: [Service]
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}
  labels:
    monitoring.promenroll.io/scrape: "true"
monitors:
  labels: {release: kube-prometheus-stack}
rules:
  require:
    alertLabels: [severity]
`

// fakeNamespaces serves namespaces from a map; a missing one is an error.
type fakeNamespaces map[string]policy.Namespace

func (f fakeNamespaces) Namespace(_ context.Context, name string) (policy.Namespace, error) {
	ns, ok := f[name]
	if !ok {
		return policy.Namespace{Name: name}, fmt.Errorf("namespace %s not found", name)
	}
	ns.Name = name
	return ns, nil
}

var testNamespaces = fakeNamespaces{
	"shop":        {Labels: map[string]string{"team": "payments"}},
	"sandbox":     {Labels: map[string]string{"team": "lab"}, Annotations: map[string]string{policy.ModeAnnotation: "dry-run"}},
	"optout":      {Labels: map[string]string{policy.OptOutLabel: "false"}},
	"no-team":     {},
	"monitors":    {},
	"kube-system": {},
}

// server starts the handlers behind controller-runtime's admission.Webhook,
// as serve does, on 127.0.0.1.
type server struct {
	*httptest.Server
	metrics *Metrics
}

func newServer(t *testing.T, policyDoc string) *server {
	t.Helper()
	s, _ := newLimitedServer(t, policyDoc, nil)
	return s
}

// newLimitedServer serves both webhooks as serve wires them, behind a
// Limiter sized by lc (nil: none).
func newLimitedServer(t *testing.T, policyDoc string, lc *limit.Config) (*server, *limit.Limiter) {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(policyDoc), policyOptions())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	var limiter *limit.Limiter
	if lc != nil {
		limiter = limit.New(*lc, m.Shed)
	}
	store := policystore.Static(p)
	mux := http.NewServeMux()
	mux.Handle(MutatePath, Endpoint("mutate", &Mutator{Policies: store, Namespaces: testNamespaces, Metrics: m}, limiter))
	mux.Handle(ValidatePath, Endpoint("validate", &Validator{Policies: store, Namespaces: testNamespaces, Metrics: m}, limiter))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return &server{Server: s, metrics: m}, limiter
}

// review builds an AdmissionReview for obj (and old, on UPDATE).
func review(kind metav1.GroupVersionKind, op admissionv1.Operation, namespace string, obj, old any) []byte {
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("uid-1"),
		Kind:      kind,
		Resource:  metav1.GroupVersionResource{Group: kind.Group, Version: kind.Version, Resource: "things"},
		Namespace: namespace,
		Operation: op,
		UserInfo:  authenticationv1.UserInfo{Username: "alice"},
	}
	if obj != nil {
		req.Object = runtime.RawExtension{Raw: mustJSON(obj)}
	}
	if old != nil {
		req.OldObject = runtime.RawExtension{Raw: mustJSON(old)}
	}
	ar := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: req}
	return mustJSON(ar)
}

func mustJSON(v any) []byte {
	if b, ok := v.([]byte); ok {
		return b
	}
	if s, ok := v.(string); ok {
		return []byte(s)
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// post sends body and decodes the AdmissionReview answer.
func (s *server) post(t *testing.T, path, contentType string, body []byte) (*admissionv1.AdmissionResponse, int) {
	t.Helper()
	resp, err := http.Post(s.URL+path, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &ar); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v: %s", err, data)
	}
	if ar.Response == nil {
		t.Fatalf("AdmissionReview without response: %s", data)
	}
	return ar.Response, resp.StatusCode
}

func (s *server) admit(t *testing.T, path string, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	r, _ := s.post(t, path, "application/json", body)
	return r
}

// applyPatch applies the response's JSON Patch to the object as sent.
func applyPatch(t *testing.T, obj any, r *admissionv1.AdmissionResponse) map[string]any {
	t.Helper()
	doc, err := applyJSONPatch(mustJSON(obj), r.Patch)
	if err != nil {
		t.Fatalf("patch %s: %v", r.Patch, err)
	}
	var out map[string]any
	if err := json.Unmarshal(doc, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// applyJSONPatch applies an RFC 6902 patch (none: doc unchanged).
func applyJSONPatch(doc, patch []byte) ([]byte, error) {
	if len(patch) == 0 {
		return doc, nil
	}
	p, err := jsonpatch5.DecodePatch(patch)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}

var (
	deploymentGVK     = metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	serviceGVK        = metav1.GroupVersionKind{Version: "v1", Kind: "Service"}
	prometheusRuleGVK = metav1.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "PrometheusRule"}
	serviceMonitorGVK = metav1.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}
)

func policyOptions() policy.Options { return policy.Options{OwnNamespace: "promenroll-system"} }
