package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ruleOfSize is a valid PrometheusRule of at least n bytes of JSON.
func ruleOfSize(n int) string {
	var rules []string
	for i := 0; len(strings.Join(rules, ",")) < n; i++ {
		rules = append(rules, fmt.Sprintf(`{"alert":"Alert%d","expr":"up{job=\"job-%d\"} == 0","for":"5m","labels":{"severity":"warning"},"annotations":{"summary":"job %d is down"}}`, i, i, i))
	}
	return `{"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","metadata":{"name":"big"},"spec":{"groups":[{"name":"g","rules":[` + strings.Join(rules, ",") + `]}]}}`
}

// wantShed checks a refusal as the API server reads it: HTTP 429 (a failed
// call, so the failurePolicy applies), no Retry-After (the API server's
// client would retry), a Status naming the cause.
func wantShed(t *testing.T, url string, body []byte, wantInMessage string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st metav1.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("the refusal is not a Status: %v", err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || st.Code != http.StatusTooManyRequests || st.Reason != metav1.StatusReasonTooManyRequests {
		t.Fatalf("HTTP %d, Status %d %s, want 429 TooManyRequests", resp.StatusCode, st.Code, st.Reason)
	}
	if resp.Header.Get("Retry-After") != "" {
		t.Errorf("Retry-After %q: the API server would retry", resp.Header.Get("Retry-After"))
	}
	if !strings.Contains(st.Message, "promenroll is busy") || !strings.Contains(st.Message, wantInMessage) {
		t.Errorf("message %q, want it to say promenroll is busy and %q", st.Message, wantInMessage)
	}
}

// TestHeavyRequestsAreBoundedAndShed: with every slot taken, a large rule is
// refused on both paths with 429 once its budget is spent, and counted; a
// small rule and a Deployment are never held up; a freed slot admits again.
func TestHeavyRequestsAreBoundedAndShed(t *testing.T) {
	s, limiter := newLimitedServer(t, testPolicy, &LimiterConfig{MaxInFlight: 1, Budget: 50 * time.Millisecond})
	big := review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(100*1024), nil)
	if r := s.admit(t, ValidatePath, big); !r.Allowed {
		t.Fatalf("the large rule is refused with a free slot: %v", r.Result)
	}
	// A validation in flight takes the only slot.
	release, _, err := limiter.acquire(t.Context(), 100*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantShed(t, s.URL+ValidatePath, big, "/validate could not start within 50ms")
	wantShed(t, s.URL+MutatePath, big, "/mutate could not start within") // 5ms by now: the overload is sustained
	for _, w := range []string{"validate", "mutate"} {
		if n := testutil.ToFloat64(s.metrics.Shed.WithLabelValues(w)); n != 1 {
			t.Errorf("promenroll_shed_requests_total{webhook=%q} = %v, want 1", w, n)
		}
	}
	if r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(1024), nil)); !r.Allowed {
		t.Errorf("a small rule waited for the heavy slot: %v", r.Result)
	}
	if r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil)); !r.Allowed {
		t.Errorf("a Deployment waited for the heavy slot: %v", r.Result)
	}
	release()
	if r := s.admit(t, ValidatePath, big); !r.Allowed {
		t.Errorf("the large rule is refused after the slot was freed: %v", r.Result)
	}
}

// TestHeavyRequestsAreBoundedByBytes: the byte budget holds concurrent
// large bodies to what the memory limit allows, whatever the slot count; a
// body larger than the whole budget still runs, alone.
func TestHeavyRequestsAreBoundedByBytes(t *testing.T) {
	s, limiter := newLimitedServer(t, testPolicy, &LimiterConfig{MaxInFlight: 4, InFlightBytes: 400 * 1024, Budget: 50 * time.Millisecond})
	release, _, err := limiter.acquire(t.Context(), 300*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantShed(t, s.URL+ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(150*1024), nil), "400 KiB of their bodies")
	if r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(70*1024), nil)); !r.Allowed {
		t.Errorf("a rule within the remaining bytes was refused: %v", r.Result)
	}
	release()
	huge := review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(450*1024), nil)
	if r := s.admit(t, ValidatePath, huge); !r.Allowed {
		t.Errorf("a body larger than the budget was refused with nothing in flight: %v", r.Result)
	}
}

// TestShedBudgetIsHalfTheAPIServersTimeout: the API server appends its
// timeout to the URL; a request never waits more than half of it.
func TestShedBudgetIsHalfTheAPIServersTimeout(t *testing.T) {
	s, limiter := newLimitedServer(t, testPolicy, &LimiterConfig{MaxInFlight: 1, Budget: time.Minute})
	release, _, err := limiter.acquire(t.Context(), 100*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	wantShed(t, s.URL+ValidatePath+"?timeout=200ms", review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(100*1024), nil), "within 100ms")
}

// TestSustainedOverloadShortensTheWait: once no heavy request has started
// without waiting for a whole budget, a request waits a tenth of it; a
// request that starts at once ends the overload.
func TestSustainedOverloadShortensTheWait(t *testing.T) {
	s, limiter := newLimitedServer(t, testPolicy, &LimiterConfig{MaxInFlight: 1, Budget: 500 * time.Millisecond})
	big := review(prometheusRuleGVK, admissionv1.Create, "shop", ruleOfSize(100*1024), nil)
	release, _, err := limiter.acquire(t.Context(), 100*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A burst: the last start without waiting is recent.
	wantShed(t, s.URL+ValidatePath, big, "within 500ms")
	// Sustained: the last start without waiting is older than the budget.
	limiter.startedAt.Store(time.Now().Add(-time.Minute).UnixNano())
	wantShed(t, s.URL+ValidatePath, big, "within 50ms")
	release()
	if r := s.admit(t, ValidatePath, big); !r.Allowed {
		t.Fatalf("refused with a free slot: %v", r.Result)
	}
	if since := time.Since(time.Unix(0, limiter.startedAt.Load())); since > time.Minute/2 {
		t.Errorf("a request that started at once did not end the overload (last start %v ago)", since)
	}
}

func TestDefaultInFlightBytes(t *testing.T) {
	for _, c := range []struct{ limit, want int64 }{
		{256 << 20, (256 << 20) / 2 / HeapPerBodyByte},
		{math.MaxInt64, math.MaxInt64}, // no GOMEMLIMIT
		{1 << 20, DefaultHeavyBytes},   // never below one heavy request
	} {
		if got := DefaultInFlightBytes(c.limit); got != c.want {
			t.Errorf("DefaultInFlightBytes(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}
