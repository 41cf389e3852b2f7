package webhook

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/promenroll/promenroll/policy"
)

// ruleOfSize is a valid PrometheusRule of at least n bytes of JSON.
func ruleOfSize(n int) string {
	var rules []string
	for i := 0; len(strings.Join(rules, ",")) < n; i++ {
		rules = append(rules, fmt.Sprintf(`{"alert":"Alert%d","expr":"up{job=\"job-%d\"} == 0","for":"5m","labels":{"severity":"warning"},"annotations":{"summary":"job %d is down"}}`, i, i, i))
	}
	return `{"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","metadata":{"name":"big"},"spec":{"groups":[{"name":"g","rules":[` + strings.Join(rules, ",") + `]}]}}`
}

// TestHeavyValidationsAreBoundedAndShed: with every heavy slot taken, a
// heavy rule is refused with 429 once its budget is spent, and counted; a
// small rule and a Deployment are never held up.
func TestHeavyValidationsAreBoundedAndShed(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policyOptions())
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	limiter := NewLimiter(1, 64*1024, 50*time.Millisecond, m)
	store := StaticPolicyStore(p)
	mux := http.NewServeMux()
	mux.Handle(MutatePath, &admission.Webhook{Handler: &Mutator{Policies: store, Namespaces: testNamespaces, Metrics: m}})
	mux.Handle(ValidatePath, &admission.Webhook{Handler: &Validator{Policies: store, Namespaces: testNamespaces, Metrics: m, Limiter: limiter}})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := &server{Server: srv, metrics: m}

	big := ruleOfSize(100 * 1024)
	if r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", big, nil)); !r.Allowed {
		t.Fatalf("the heavy rule is refused with a free slot: %v", r.Result)
	}
	// Every slot is taken (a validation in flight).
	release, err := limiter.Acquire(t.Context(), 1<<20, "PrometheusRule")
	if err != nil {
		t.Fatal(err)
	}
	r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", big, nil))
	if r.Allowed || r.Result.Code != http.StatusTooManyRequests || !strings.Contains(r.Result.Message, "promenroll is busy") {
		t.Fatalf("allowed=%v result=%+v, want 429 promenroll is busy", r.Allowed, r.Result)
	}
	if n := testutil.ToFloat64(m.Shed.WithLabelValues("PrometheusRule")); n != 1 {
		t.Errorf("promenroll_shed_requests_total{kind=PrometheusRule} = %v, want 1", n)
	}
	if r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(1024), nil)); !r.Allowed {
		t.Errorf("a small rule waited for the heavy slot: %v", r.Result)
	}
	if r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil)); !r.Allowed {
		t.Errorf("a Deployment waited for the heavy slot: %v", r.Result)
	}
	release()
	if r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", big, nil)); !r.Allowed {
		t.Errorf("the heavy rule is refused after the slot was freed: %v", r.Result)
	}
}
