// Command load measures promenroll's admission handlers under concurrent
// load, the way the API server calls them: HTTPS with keep-alive on
// 127.0.0.1, AdmissionReview bodies, the handlers wired as `serve` wires
// them (controller-runtime's admission.Webhook). It is bounded in requests
// (-n) and time (-max-duration) and stops by itself. `make load`.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/cluster"
	"github.com/promenroll/promenroll/webhook"
)

func main() {
	n := flag.Int("n", 20000, "requests per scenario")
	conc := flag.Int("c", 8, "concurrent clients")
	maxDur := flag.Duration("max-duration", 60*time.Second, "stop a scenario after this long")
	flag.Parse()
	if err := run(*n, *conc, *maxDur); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

const loadPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
enroll:
- name: workloads
  kinds: [Deployment, StatefulSet, DaemonSet]
  labels: {monitoring.promenroll.io/scrape: "true", team: "{namespaceLabel:team}"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
monitors:
  labels: {release: kube-prometheus-stack}
rules:
  require: {alertLabels: [severity], severityValues: [critical, warning, info, none]}
`

const deployment = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","namespace":"shop","labels":{"app.kubernetes.io/name":"api"}},
"spec":{"replicas":2,"selector":{"matchLabels":{"app.kubernetes.io/name":"api"}},"template":{"metadata":{"labels":{"app.kubernetes.io/name":"api"}},
"spec":{"containers":[{"name":"api","image":"registry.example/api:1.0","resources":{"requests":{"cpu":"100m","memory":"128Mi"}}}]}}}}`

const serviceMonitor = `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"api","namespace":"shop"},
"spec":{"selector":{"matchLabels":{"app.kubernetes.io/name":"api"}},"endpoints":[{"port":"metrics","interval":"30s",
"relabelings":[{"action":"replace","sourceLabels":["__meta_kubernetes_pod_node_name"],"targetLabel":"node"}]}]}}`

// staticPrometheuses stands for the webhook's Prometheus informer cache.
type staticPrometheuses []policy.PrometheusSelectors

func (s staticPrometheuses) Prometheuses(context.Context) ([]policy.PrometheusSelectors, error) {
	return s, nil
}

// namespacedServices stands for the Service informer cache and its
// namespace index.
type namespacedServices map[string][]policy.Service

func (s namespacedServices) Services(namespaces []string, all bool) []policy.Service {
	var out []policy.Service
	if all {
		for _, l := range s {
			out = append(out, l...)
		}
		return out
	}
	for _, ns := range namespaces {
		out = append(out, s[ns]...)
	}
	return out
}

// clusterState makes nProm Prometheus objects (one selecting the release
// label in every namespace, the others team-scoped) and nSvc Services
// spread over nNS namespaces ("shop" among them).
func clusterState(nProm, nSvc, nNS int) (staticPrometheuses, namespacedServices) {
	release := &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kube-prometheus-stack"}}
	proms := staticPrometheuses{{Namespace: "monitoring", Name: "k8s", ServiceMonitor: release, ServiceMonitorNamespace: &metav1.LabelSelector{}, ScrapeInterval: "30s"}}
	for i := 1; i < nProm; i++ {
		team := &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("team-%d", i)}}
		proms = append(proms, policy.PrometheusSelectors{Namespace: fmt.Sprintf("team-%d", i), Name: "prometheus", ServiceMonitor: team, PodMonitor: team, Rule: team, ScrapeInterval: "30s"})
	}
	services := namespacedServices{}
	for i := range nSvc {
		ns := fmt.Sprintf("ns-%d", i%nNS)
		if i%nNS == 0 {
			ns = "shop"
		}
		services[ns] = append(services[ns], policy.Service{Namespace: ns, Name: fmt.Sprintf("svc-%d", i),
			Labels: map[string]string{"app.kubernetes.io/name": "api", "app.kubernetes.io/instance": fmt.Sprintf("i-%d", i)},
			Ports:  []policy.Port{{Name: "http", Number: 80}, {Name: "metrics", Number: 9090}}})
	}
	return proms, services
}

type scenario struct {
	name, path string
	body       []byte
	wantPatch  bool
}

func run(n, conc int, maxDur time.Duration) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	p, err := policy.Parse("load-policy.yaml", []byte(loadPolicy), policy.Options{})
	if err != nil {
		return err
	}
	store := webhook.StaticPolicyStore(p)
	namespaces := webhook.NamespaceGetterFunc(func(_ context.Context, name string) (policy.Namespace, error) {
		return policy.Namespace{Name: name, Labels: map[string]string{"team": "payments"}}, nil
	})
	// Decision lines are encoded as in serve (JSON through zap), then dropped.
	enc := zap.NewProductionEncoderConfig()
	logf.SetLogger(zapr.NewLogger(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(io.Discard), zapcore.InfoLevel))))
	metrics := webhook.NewMetrics(nil)
	// A cluster's worth of cached state for the monitor scenarios: 50
	// Prometheus objects and 5,000 Services in 1,000 namespaces.
	proms, services := clusterState(50, 5000, 1000)
	mux := http.NewServeMux()
	mux.Handle(webhook.MutatePath, &admission.Webhook{Handler: &webhook.Mutator{Policies: store, Namespaces: namespaces, Prometheuses: proms, Metrics: metrics}})
	mux.Handle(webhook.ValidatePath, &admission.Webhook{Handler: &webhook.Validator{Policies: store, Namespaces: namespaces, Prometheuses: proms, Services: services, Metrics: metrics}})
	srv := httptest.NewUnstartedServer(mux) // 127.0.0.1
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	srv.StartTLS()
	defer srv.Close()

	rule, err := os.ReadFile(filepath.Join(root, "policy", "testdata", "rules", "default", "kube-prometheus", "kubernetesControlPlane.good.yaml"))
	if err != nil {
		return err
	}
	ruleJSON, err := yaml.YAMLToJSON(rule)
	if err != nil {
		return err
	}
	scenarios := []scenario{
		{"mutate Deployment CREATE", webhook.MutatePath, review("apps", "Deployment", []byte(deployment)), true},
		{"validate PrometheusRule (kube-prometheus control plane, 134 rules)", webhook.ValidatePath, review("monitoring.coreos.com", "PrometheusRule", ruleJSON), false},
		{"mutate ServiceMonitor (50 Prometheus objects: labels and selection)", webhook.MutatePath, review("monitoring.coreos.com", "ServiceMonitor", []byte(serviceMonitor)), true},
		{"validate ServiceMonitor (monitor gate; ports against 5,000 Services in 1,000 namespaces; 50 Prometheus objects)", webhook.ValidatePath, review("monitoring.coreos.com", "ServiceMonitor", []byte(serviceMonitor)), false},
	}
	fmt.Printf("load: %d requests per scenario, %d concurrent clients, HTTPS keep-alive on %s, GOMAXPROCS=%d\n\n", n, conc, srv.Listener.Addr(), goruntime.GOMAXPROCS(0))
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = conc
	for _, s := range scenarios {
		if err := measure(client, srv.URL, s, n, conc, maxDur); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	return nil
}

func review(group, kind string, obj []byte) []byte {
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("load"), Kind: metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
			Operation: admissionv1.Create, Namespace: "shop", Object: runtime.RawExtension{Raw: obj},
		},
	}
	b, _ := json.Marshal(ar)
	return b
}

func measure(client *http.Client, base string, s scenario, n, conc int, maxDur time.Duration) error {
	var next atomic.Int64
	var failed atomic.Int64
	lat := make([]time.Duration, n)
	deadline := time.Now().Add(maxDur)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				resp, err := client.Post(base+s.path, "application/json", bytes.NewReader(s.body))
				if err != nil {
					failed.Add(1)
					continue
				}
				var ar admissionv1.AdmissionReview
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				if json.Unmarshal(data, &ar) != nil || ar.Response == nil || !ar.Response.Allowed || (len(ar.Response.Patch) > 0) != s.wantPatch {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	done := min(int(next.Load()), n)
	lat = lat[:done]
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	fmt.Printf("%s\n  %d requests in %s: %.0f req/s, failed %d\n  latency p50 %s  p90 %s  p99 %s  max %s\n\n",
		s.name, done, elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds(), failed.Load(),
		pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	if failed.Load() > 0 {
		return fmt.Errorf("%d requests failed", failed.Load())
	}
	return nil
}
