package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/policy"

	"github.com/promenroll/promenroll/internal/clusterstate/clusterstatetest"
)

// handlerFor wires a handler as serve does (Endpoint: decoding, panic
// recovery, encoding), without a network.
func handlerFor(b *testing.B, h admission.Handler) http.Handler {
	b.Helper()
	return Endpoint("bench", h, nil)
}

func benchmarkHTTP(b *testing.B, h http.Handler, path string, body []byte) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

func benchPolicy(tb testing.TB) *policystore.Store {
	tb.Helper()
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policy.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return policystore.Static(p)
}

// BenchmarkMutateDeployment is the full /mutate path for a typical
// Deployment: decode the AdmissionReview, decide, build the patch, encode.
func BenchmarkMutateDeployment(b *testing.B) {
	h := handlerFor(b, &Mutator{Policies: benchPolicy(b), Namespaces: testNamespaces, Metrics: NewMetrics(nil)})
	benchmarkHTTP(b, h, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil))
}

// BenchmarkValidateLargestRule is the full /validate path for kube-prometheus'
// largest PrometheusRule (134 rules).
func BenchmarkValidateLargestRule(b *testing.B) {
	data, err := os.ReadFile("../policy/testdata/rules/default/kube-prometheus/kubernetesControlPlane.good.yaml")
	if err != nil {
		b.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		b.Fatal(err)
	}
	h := handlerFor(b, &Validator{Policies: benchPolicy(b), Namespaces: fakeNamespaces{"monitoring": {}}, Metrics: NewMetrics(nil)})
	benchmarkHTTP(b, h, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "monitoring", js, nil))
}

// BenchmarkValidateServiceMonitor5000Services is the full /validate path
// for a ServiceMonitor whose port is checked against the Services of its
// namespace, with 5,000 Services in 1,000 namespaces behind the reader
// (controller-runtime's fake client: an in-memory store that deep-copies
// on every List like the informer cache does, a fair stand-in).
func BenchmarkValidateServiceMonitor5000Services(b *testing.B) {
	builder := fake.NewClientBuilder()
	for i := range 5000 {
		s := clusterstatetest.Service(i)
		s.ManagedFields = nil // the fake client refuses entries without an apiVersion
		s.ResourceVersion = ""
		builder = builder.WithObjects(s)
	}
	services := clusterstate.CachedServices{Cache: builder.Build()}
	nss := fakeNamespaces{}
	for i := range 1000 {
		nss[fmt.Sprintf("ns-%d", i)] = policy.Namespace{}
	}
	sm := `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"api","namespace":"ns-7"},` +
		`"spec":{"selector":{"matchLabels":{"app.kubernetes.io/name":"api"}},"endpoints":[{"port":"metrics","interval":"30s","relabelings":[{"action":"replace","sourceLabels":["__meta_kubernetes_pod_node_name"],"targetLabel":"node"}]}]}}`
	h := handlerFor(b, &Validator{Policies: benchPolicy(b), Namespaces: nss, Services: services, Metrics: NewMetrics(nil)})
	benchmarkHTTP(b, h, ValidatePath, review(metav1.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "ServiceMonitor"}, admissionv1.Create, "ns-7", sm, nil))
}

// enrolledDeployment is deploymentJSON as stored after enrollment.
func enrolledDeployment(b *testing.B) string {
	h := handlerFor(b, &Mutator{Policies: benchPolicy(b), Namespaces: testNamespaces, Metrics: NewMetrics(nil)})
	req := httptest.NewRequest(http.MethodPost, MutatePath, bytes.NewReader(review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &ar); err != nil || ar.Response == nil || len(ar.Response.Patch) == 0 {
		b.Fatalf("no patch: %v: %s", err, rec.Body)
	}
	doc, err := applyJSONPatch([]byte(deploymentJSON), ar.Response.Patch)
	if err != nil {
		b.Fatal(err)
	}
	return string(doc)
}

// BenchmarkMutateDeploymentUpdateEnrolled is an UPDATE of an object
// promenroll already enrolled (a rollout, a scale, a re-apply): nothing to
// change.
func BenchmarkMutateDeploymentUpdateEnrolled(b *testing.B) {
	obj := enrolledDeployment(b)
	h := handlerFor(b, &Mutator{Policies: benchPolicy(b), Namespaces: testNamespaces, Metrics: NewMetrics(nil)})
	benchmarkHTTP(b, h, MutatePath, review(deploymentGVK, admissionv1.Update, "shop", obj, obj))
}

// BenchmarkNoopDeployment is the baseline: a handler that allows
// everything, behind the same decoding and encoding.
func BenchmarkNoopDeployment(b *testing.B) {
	h := handlerFor(b, admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") }))
	benchmarkHTTP(b, h, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil))
}
