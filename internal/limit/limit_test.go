package limit

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

// server serves /validate and /mutate behind a Limiter sized by c, each
// answering 200 once it has read the body, as a webhook does.
type server struct {
	*httptest.Server
	limiter *Limiter
	shed    *prometheus.CounterVec
}

func newServer(t *testing.T, c Config) *server {
	t.Helper()
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "promenroll_shed_requests_total"}, []string{"webhook"})
	l := New(c, shed)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusOK)
	})
	mux := http.NewServeMux()
	mux.Handle("/validate", l.Wrap("validate", ok))
	mux.Handle("/mutate", l.Wrap("mutate", ok))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return &server{Server: s, limiter: l, shed: shed}
}

// body is a request body of n bytes.
func body(n int) []byte { return bytes.Repeat([]byte("x"), n) }

// admitted reports whether the request reached the webhook.
func (s *server) admitted(t *testing.T, path string, b []byte) bool {
	t.Helper()
	resp, err := http.Post(s.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// wantShed checks a refusal as the API server reads it: HTTP 429 (a failed
// call, so the failurePolicy applies), no Retry-After (the API server's
// client would retry), a Status naming the cause.
func wantShed(t *testing.T, url string, b []byte, wantInMessage string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
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

// TestHeavyRequestsAreBoundedAndShed: with every slot taken, a large body is
// refused on both paths with 429 once its budget is spent, and counted; a
// small body (every enrollment) is never held up; a freed slot admits again.
func TestHeavyRequestsAreBoundedAndShed(t *testing.T) {
	s := newServer(t, Config{MaxInFlight: 1, Budget: 50 * time.Millisecond})
	big := body(100 * 1024)
	if !s.admitted(t, "/validate", big) {
		t.Fatal("the large body is refused with a free slot")
	}
	// A validation in flight takes the only slot.
	release, _, err := s.limiter.acquire(t.Context(), 100*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantShed(t, s.URL+"/validate", big, "/validate could not start within 50ms")
	wantShed(t, s.URL+"/mutate", big, "/mutate could not start within") // 5ms by now: the overload is sustained
	for _, w := range []string{"validate", "mutate"} {
		if n := testutil.ToFloat64(s.shed.WithLabelValues(w)); n != 1 {
			t.Errorf("promenroll_shed_requests_total{webhook=%q} = %v, want 1", w, n)
		}
	}
	if !s.admitted(t, "/validate", body(1024)) {
		t.Error("a small rule waited for the heavy slot")
	}
	if !s.admitted(t, "/mutate", body(2048)) {
		t.Error("a Deployment waited for the heavy slot")
	}
	release()
	if !s.admitted(t, "/validate", big) {
		t.Error("the large body is refused after the slot was freed")
	}
}

// TestHeavyRequestsAreBoundedByBytes: the byte budget holds concurrent
// large bodies to what the memory limit allows, whatever the slot count; a
// body larger than the whole budget still runs, alone.
func TestHeavyRequestsAreBoundedByBytes(t *testing.T) {
	s := newServer(t, Config{MaxInFlight: 4, InFlightBytes: 400 * 1024, Budget: 50 * time.Millisecond})
	release, _, err := s.limiter.acquire(t.Context(), 300*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wantShed(t, s.URL+"/validate", body(150*1024), "400 KiB of their bodies")
	if !s.admitted(t, "/validate", body(70*1024)) {
		t.Error("a body within the remaining bytes was refused")
	}
	release()
	if !s.admitted(t, "/validate", body(450*1024)) {
		t.Error("a body larger than the budget was refused with nothing in flight")
	}
}

// TestShedBudgetIsHalfTheAPIServersTimeout: the API server appends its
// timeout to the URL; a request never waits more than half of it.
func TestShedBudgetIsHalfTheAPIServersTimeout(t *testing.T) {
	s := newServer(t, Config{MaxInFlight: 1, Budget: time.Minute})
	release, _, err := s.limiter.acquire(t.Context(), 100*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	wantShed(t, s.URL+"/validate?timeout=200ms", body(100*1024), "within 100ms")
}

// TestSustainedOverloadShortensTheWait: once no heavy request has started
// without waiting for a whole budget, a request waits a tenth of it; a
// request that starts at once ends the overload.
func TestSustainedOverloadShortensTheWait(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC))
	s := newServer(t, Config{MaxInFlight: 1, Budget: 500 * time.Millisecond, Clock: clk})
	big := body(100 * 1024)
	release, _, err := s.limiter.acquire(t.Context(), 100*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// A burst: the last start without waiting is recent.
	wantShed(t, s.URL+"/validate", big, "within 500ms")
	// Sustained: the last start without waiting is older than the budget.
	clk.SetTime(clk.Now().Add(time.Minute))
	wantShed(t, s.URL+"/validate", big, "within 50ms")
	release()
	if !s.admitted(t, "/validate", big) {
		t.Fatal("refused with a free slot")
	}
	if since := clk.Since(time.Unix(0, s.limiter.startedAt.Load())); since != 0 {
		t.Errorf("a request that started at once did not end the overload (last start %v ago)", since)
	}
	// Back to a burst: the next wait is the whole budget again.
	release, _, err = s.limiter.acquire(t.Context(), 100*1024, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	wantShed(t, s.URL+"/validate", big, "within 500ms")
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
