// Command load measures promenroll's admission handlers under concurrent
// load, the way the API server calls them: HTTPS with keep-alive on
// 127.0.0.1, AdmissionReview bodies, the handlers wired as `serve` wires
// them (controller-runtime's admission.Webhook). It is bounded in requests
// (-n) and time (-max-duration) and stops by itself. `make load`.
package main

import (
	"bufio"
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
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
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

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/cluster"
	"github.com/promenroll/promenroll/webhook"
)

func main() {
	n := flag.Int("n", 20000, "requests per scenario")
	conc := flag.Int("c", 8, "concurrent clients")
	maxDur := flag.Duration("max-duration", 60*time.Second, "stop a scenario after this long")
	operator := flag.String("operator", "", "prometheus-operator's admission webhook binary (bin/operator-admission): also measure it on the same rule bodies and report the ratio")
	pin := flag.Bool("pinned", false, "run the server in a child process pinned to CPU 0 with GOMAXPROCS=1: server CPU per request, and open-loop latency at -rate")
	rate := flag.Int("rate", 1000, "with -pinned: open-loop requests per second")
	over := flag.Bool("overload", false, "pinned server: large rule validations open-loop at twice its measured capacity for -overload-for, beside a stream of Deployment CREATEs, then back to half capacity; checks the overload targets")
	overFor := flag.Duration("overload-for", 60*time.Second, "with -overload: how long the overload lasts")
	mem := flag.Bool("memory", false, "pinned server: four concurrent 1.4 MiB rule validations, peak RSS against deploy/'s memory limit")
	serve := flag.Bool("serve", false, "internal: serve the handlers only (the -pinned child)")
	var lc limit.Config
	flag.IntVar(&lc.MaxInFlight, "max-heavy", 0, "with -serve: --max-heavy-validations")
	flag.Int64Var(&lc.InFlightBytes, "heavy-inflight-bytes", 0, "with -serve: --heavy-inflight-bytes")
	flag.Parse()
	var err error
	switch {
	case *serve:
		err = serveOnly(lc)
	case *over:
		err = overload(*overFor)
	case *mem:
		err = memory()
	case *pin:
		err = pinned(*n, *conc, *rate, *maxDur)
	default:
		err = run(*n, *conc, *maxDur, *operator)
	}
	if err != nil {
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
  maxBytes: 3145728 # raised for the 1.4 MiB objects of -memory
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

// newMux wires the handlers as serve does (the limiter in front), with a cluster's worth of
// cached state, plus the no-op baseline at /noop.
func newMux(lc limit.Config) (*http.ServeMux, error) {
	p, err := policy.Parse("load-policy.yaml", []byte(loadPolicy), policy.Options{})
	if err != nil {
		return nil, err
	}
	store := policystore.Static(p)
	namespaces := clusterstate.NamespaceGetterFunc(func(_ context.Context, name string) (policy.Namespace, error) {
		return policy.Namespace{Name: name, Labels: map[string]string{"team": "payments"}}, nil
	})
	// Decision lines are encoded as in serve (JSON through zap), then dropped.
	enc := zap.NewProductionEncoderConfig()
	logf.SetLogger(zapr.NewLogger(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(io.Discard), zapcore.InfoLevel))))
	metrics := webhook.NewMetrics(nil)
	// A cluster's worth of cached state for the monitor scenarios: 50
	// Prometheus objects and 5,000 Services in 1,000 namespaces.
	proms, services := clusterState(50, 5000, 1000)
	limiter := limit.New(lc, metrics.Shed)
	mux := http.NewServeMux()
	mux.Handle(webhook.MutatePath, webhook.Endpoint("mutate", &webhook.Mutator{Policies: store, Namespaces: namespaces, Prometheuses: proms, Metrics: metrics}, limiter))
	mux.Handle(webhook.ValidatePath, webhook.Endpoint("validate", &webhook.Validator{Policies: store, Namespaces: namespaces, Prometheuses: proms, Services: services, Metrics: metrics}, limiter))
	// The baseline: a webhook that allows everything, on the identical
	// stack (TLS, mux, controller-runtime's admission.Webhook decoding and
	// encoding).
	mux.Handle("/noop", webhook.Endpoint("noop", admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	}), limiter))
	return mux, nil
}

type scenario struct {
	name, path string
	body       []byte
	wantPatch  bool
	// bodies, if set, are sent in turn instead of body (each must be
	// allowed; the patch is not looked at).
	bodies [][]byte
}

type result struct {
	summary
	done int
	rate float64 // requests per second
}

func run(n, conc int, maxDur time.Duration, operatorBin string) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	mux, err := newMux(limit.Config{})
	if err != nil {
		return err
	}
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
	// kube-prometheus' eight PrometheusRule objects, the bodies sent to
	// promenroll and to the operator's webhook alike.
	ruleFiles, err := filepath.Glob(filepath.Join(root, "policy", "testdata", "rules", "default", "kube-prometheus", "*.good.yaml"))
	if err != nil || len(ruleFiles) != 8 {
		return fmt.Errorf("kube-prometheus rule objects: %w (%d found)", err, len(ruleFiles))
	}
	var ruleBodies [][]byte
	for _, f := range ruleFiles {
		y, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			return err
		}
		ruleBodies = append(ruleBodies, review("monitoring.coreos.com", "PrometheusRule", j))
	}
	scenarios := []scenario{
		{name: "no-op webhook, Deployment CREATE (baseline: same TLS, mux, decoding)", path: "/noop", body: review("apps", "Deployment", []byte(deployment)), wantPatch: false},
		{name: "mutate Deployment CREATE", path: webhook.MutatePath, body: review("apps", "Deployment", []byte(deployment)), wantPatch: true},
		{name: "validate PrometheusRule (kube-prometheus control plane, 134 rules)", path: webhook.ValidatePath, body: review("monitoring.coreos.com", "PrometheusRule", ruleJSON), wantPatch: false},
		{name: "mutate ServiceMonitor (50 Prometheus objects: labels and selection)", path: webhook.MutatePath, body: review("monitoring.coreos.com", "ServiceMonitor", []byte(serviceMonitor)), wantPatch: true},
		{name: "validate ServiceMonitor (monitor gate; ports against 5,000 Services in 1,000 namespaces; 50 Prometheus objects)", path: webhook.ValidatePath, body: review("monitoring.coreos.com", "ServiceMonitor", []byte(serviceMonitor)), wantPatch: false},
	}
	fmt.Printf("load: %d requests per scenario, %d concurrent clients, HTTPS keep-alive on %s, GOMAXPROCS=%d\n\n", n, conc, srv.Listener.Addr(), goruntime.GOMAXPROCS(0))
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = conc
	results := map[string]result{}
	for _, s := range scenarios {
		r, err := measure(client, srv.URL, s, n, conc, maxDur)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		results[s.name] = r
	}
	fmt.Printf("ratio: mutate Deployment CREATE / no-op: p50 %.2f×, p99 %.2f×\n\n",
		ratio(results["mutate Deployment CREATE"].p50, results[scenarios[0].name].p50), ratio(results["mutate Deployment CREATE"].p99, results[scenarios[0].name].p99))

	// The eight rule objects, each sent n/8 times, to promenroll's
	// /validate and, if given, to the operator's own webhook.
	eight := scenario{name: "validate kube-prometheus' 8 PrometheusRule objects (promenroll)", path: webhook.ValidatePath, bodies: ruleBodies}
	ours, err := measure(client, srv.URL, eight, n, conc, maxDur)
	if err != nil {
		return err
	}
	if operatorBin == "" {
		return nil
	}
	addr, stop, err := startOperator(operatorBin)
	if err != nil {
		return err
	}
	defer stop()
	opClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: conc}} //nolint:gosec // the operator's throw-away certificate
	theirs, err := measure(opClient, "https://"+addr, scenario{name: "validate the same 8 objects (prometheus-operator v0.94.1 admission webhook)", path: "/admission-prometheusrules/validate", bodies: ruleBodies}, n, conc, maxDur)
	if err != nil {
		return err
	}
	fmt.Printf("ratio: promenroll / operator webhook on the same 8 rule objects: mean %.2f×, p50 %.2f×, p99 %.2f×\n",
		ratio(ours.mean, theirs.mean), ratio(ours.p50, theirs.p50), ratio(ours.p99, theirs.p99))
	return nil
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// startOperator runs the operator's webhook binary and returns its address.
func startOperator(bin string) (string, func(), error) {
	cmd := exec.Command(bin)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s (make bench builds it): %w", bin, err)
	}
	stop := func() { stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		stop()
		return "", nil, fmt.Errorf("%s did not report its address: %w", bin, err)
	}
	return strings.TrimSpace(line), stop, nil
}

func review(group, kind string, obj []byte) []byte {
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("load"), Kind: metav1.GroupVersionKind{Group: group, Version: "v1", Kind: kind},
			// As the API server fills it (the operator's webhook checks it).
			Resource:  metav1.GroupVersionResource{Group: group, Version: "v1", Resource: strings.ToLower(kind) + "s"},
			Operation: admissionv1.Create, Namespace: "shop", Object: runtime.RawExtension{Raw: obj},
		},
	}
	b, _ := json.Marshal(ar)
	return b
}

func measure(client *http.Client, base string, s scenario, n, conc int, maxDur time.Duration) (result, error) {
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
				body := s.body
				if s.bodies != nil {
					body = s.bodies[i%len(s.bodies)]
				}
				t0 := time.Now()
				resp, err := client.Post(base+s.path, "application/json", bytes.NewReader(body))
				if err != nil {
					failed.Add(1)
					continue
				}
				var ar admissionv1.AdmissionReview
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat[i] = time.Since(t0)
				switch {
				case json.Unmarshal(data, &ar) != nil || ar.Response == nil:
					failed.Add(1)
				case !ar.Response.Allowed:
					failed.Add(1)
				case s.bodies == nil && (len(ar.Response.Patch) > 0) != s.wantPatch:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	done := min(int(next.Load()), n)
	sum := summarize(lat[:done])
	fmt.Printf("%s\n  %d requests in %s: %.0f req/s, failed %d\n  latency p50 %s  p90 %s  p99 %s  max %s\n\n",
		s.name, done, elapsed.Round(time.Millisecond), float64(done)/elapsed.Seconds(), failed.Load(),
		sum.p50.Round(time.Microsecond), sum.p90.Round(time.Microsecond), sum.p99.Round(time.Microsecond), sum.max.Round(time.Microsecond))
	if failed.Load() > 0 {
		return result{}, fmt.Errorf("%d requests failed", failed.Load())
	}
	return result{summary: sum, done: done, rate: float64(done) / elapsed.Seconds()}, nil
}
