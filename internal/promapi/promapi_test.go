package promapi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/promenroll/promenroll/internal/promapi/promapitest"
	"github.com/promenroll/promenroll/internal/testdiff"
	"github.com/promenroll/promenroll/policy"
)

var checkout = promapitest.Target{Pool: "podMonitor/promenroll-system/promenroll-workloads/0", Namespace: "shop", Pod: "checkout-7d9f8b6c5d-x2x9q",
	IP: "10.244.0.7", ControllerKind: "ReplicaSet", Name: "checkout", Hash: "7d9f8b6c5d", Port: "metrics", Health: "up"}

func serve(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(Endpoint{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestStateKeepsWhatTheStatusReads(t *testing.T) {
	down := checkout
	down.Pod, down.IP, down.Health, down.LastError = "checkout-7d9f8b6c5d-abcde", "10.244.0.8", "down", "server returned HTTP status 500 Internal Server Error"
	viaService := checkout
	viaService.Pool, viaService.Service, viaService.Port = "serviceMonitor/shop/checkout/0", "checkout", "http-metrics"
	var token string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		token = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/prefix/api/v1/targets":
			_ = promapitest.WriteTargets(w, []promapitest.Target{checkout, down}, []promapitest.Target{viaService})
		case "/prefix/api/v1/rules":
			_ = promapitest.WriteRules(w, []promapitest.Group{{Name: "g", File: "/etc/prometheus/rules/prometheus-k8s-rulefiles-0/shop-rules-1234.yaml",
				Rules: []promapitest.Rule{{Name: "r", Type: "recording", Health: "err", LastError: "vector cannot contain metrics with the same labelset"}}}})
		default:
			http.NotFound(w, r)
		}
	})
	c.base = c.base.JoinPath("prefix")
	dir := t.TempDir()
	c.endpoint.BearerTokenFile = dir + "/token"
	writeFile(t, c.endpoint.BearerTokenFile, "s3cret\n")
	st := c.State(context.Background(), false)
	want := policy.PrometheusState{
		Active: []policy.ScrapeTarget{
			{Pool: checkout.Pool, URL: "http://10.244.0.7:8080/metrics", Health: "up", Namespace: "shop", Pod: checkout.Pod, ControllerKind: "ReplicaSet", ControllerName: "checkout-7d9f8b6c5d", TemplateHash: "7d9f8b6c5d", Port: "metrics"},
			{Pool: checkout.Pool, URL: "http://10.244.0.8:8080/metrics", Health: "down", LastError: down.LastError, Namespace: "shop", Pod: down.Pod, ControllerKind: "ReplicaSet", ControllerName: "checkout-7d9f8b6c5d", TemplateHash: "7d9f8b6c5d", Port: "metrics"},
		},
		Dropped: []policy.ScrapeTarget{{Pool: "serviceMonitor/shop/checkout/0", Namespace: "shop", Pod: checkout.Pod, ControllerKind: "ReplicaSet", ControllerName: "checkout-7d9f8b6c5d", TemplateHash: "7d9f8b6c5d", Service: "checkout", Port: "http-metrics"}},
		Groups:  []policy.RuleGroupStatus{{Name: "g", File: "/etc/prometheus/rules/prometheus-k8s-rulefiles-0/shop-rules-1234.yaml", Rules: []policy.RuleHealth{{Name: "r", Health: "err", LastError: "vector cannot contain metrics with the same labelset"}}}},
	}
	if d := testdiff.Diff(want, st); d != "" {
		t.Errorf("state (-want +got):\n%s", d)
	}
	if token != "Bearer s3cret" {
		t.Errorf("Authorization %q, want the token file's content", token)
	}
	if st := c.State(context.Background(), true); st.Groups != nil || st.Err != "" {
		t.Errorf("an agent's state: rules asked for or error %q", st.Err)
	}
}

func TestBadAnswersAreErrorsNotCrashes(t *testing.T) {
	big := strings.Repeat(" ", 2<<20)
	for _, tc := range []struct {
		name, want string
		h          http.HandlerFunc
	}{
		{"html", "text/html; charset=utf-8, not Prometheus' JSON", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<html><body>Sign in</body></html>")
		}},
		{"truncated", "truncated", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, `{"status":"success","data":{"activeTargets":[{"scrapePool":"a"},`)
		}},
		{"too large", "larger than 1 MiB", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprint(w, `{"status":"success","data":{"activeTargets":[`+big+`]}}`)
		}},
		{"prometheus error", "the Prometheus answered with an error: bad_data: invalid parameter", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"invalid parameter"}`)
		}},
		{"not an object", `want "{"`, func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, `[1,2]`) }},
		{"404 text", "HTTP 404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
		{"slow", "within 200ms", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := serve(t, tc.h)
			// Only the slow answer meets the timeout: the others must fail for
			// what they are, however slowly a loaded machine decodes them.
			c.MaxBytes, c.Timeout = 1<<20, time.Minute
			if tc.name == "slow" {
				c.Timeout = 200 * time.Millisecond
			}
			st := c.State(context.Background(), false)
			if !strings.Contains(st.Err, tc.want) {
				t.Fatalf("Err = %q, want it to say %q", st.Err, tc.want)
			}
			if st.Active != nil || st.Groups != nil {
				t.Errorf("a failed answer still gave targets or rules")
			}
		})
	}
}

func TestNewNamesABadEndpoint(t *testing.T) {
	for _, e := range []Endpoint{{URL: "prometheus:9090"}, {URL: "ftp://x"}, {URL: "http://x", CAFile: "/nonexistent/ca.crt"}} {
		if _, err := New(e); err == nil {
			t.Errorf("New(%+v) accepted", e)
		}
	}
}

func FuzzDecodeTargets(f *testing.F) {
	var b bytes.Buffer
	_ = promapitest.WriteTargets(&b, []promapitest.Target{checkout}, []promapitest.Target{checkout})
	f.Add(b.Bytes())
	f.Add([]byte(`{"status":"error","error":"x"}`))
	f.Add([]byte(`{"data":{"activeTargets":[{"discoveredLabels":{"job":1}}]},"status":"success"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a1, d1, err1 := DecodeTargets(bytes.NewReader(data))
		a2, d2, err2 := DecodeTargets(bytes.NewReader(data))
		if (err1 == nil) != (err2 == nil) || len(a1) != len(a2) || len(d1) != len(d2) {
			t.Fatal("two decodes of one answer differ")
		}
	})
}

func FuzzDecodeRules(f *testing.F) {
	var b bytes.Buffer
	_ = promapitest.WriteRules(&b, []promapitest.Group{{Name: "g", File: "f", Rules: []promapitest.Rule{{Name: "r", Health: "ok"}}}})
	f.Add(b.Bytes())
	f.Add([]byte(`{"status":"success","data":{"groups":[{"rules":null}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g1, err1 := DecodeRules(bytes.NewReader(data))
		g2, err2 := DecodeRules(bytes.NewReader(data))
		if (err1 == nil) != (err2 == nil) || len(g1) != len(g2) {
			t.Fatal("two decodes of one answer differ")
		}
	})
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkDecodeTargets10000 decodes an answer of 10,000 active targets
// shaped as Prometheus writes them for Kubernetes pods (some thirty
// discovered labels each) and reports the heap the decoded targets keep.
func BenchmarkDecodeTargets10000(b *testing.B) {
	var ts []promapitest.Target
	for i := 0; i < 10000; i++ {
		t := checkout
		t.Namespace, t.Name, t.Pod, t.IP = fmt.Sprintf("ns-%d", i%100), fmt.Sprintf("app-%d", i), fmt.Sprintf("app-%d-7d9f8b6c5d-x2x9q", i), fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		ts = append(ts, t)
	}
	var answer bytes.Buffer
	if err := promapitest.WriteTargets(&answer, ts, nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(answer.Len()))
	var kept []policy.ScrapeTarget
	var before, after runtime.MemStats
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		runtime.ReadMemStats(&before)
		active, _, err := DecodeTargets(bytes.NewReader(answer.Bytes()))
		if err != nil {
			b.Fatal(err)
		}
		kept = active
		runtime.GC()
		runtime.ReadMemStats(&after)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "kept-MiB/10k-targets")
	runtime.KeepAlive(kept)
}
