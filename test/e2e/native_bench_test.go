package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

// handWrittenPolicy is the floor of the API server's own machinery: one
// MutatingAdmissionPolicy adding the suite policy's two workload labels.
const handWrittenPolicy = `apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicy
metadata: {name: bench-hand-written}
spec:
  failurePolicy: Ignore
  reinvocationPolicy: IfNeeded
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [deployments]}
  mutations:
  - patchType: JSONPatch
    jsonPatch:
      expression: >-
        [JSONPatch{op: "add", path: "/metadata/labels/monitoring.promenroll.io~1scrape", value: "true"},
         JSONPatch{op: "add", path: "/spec/template/metadata/labels/monitoring.promenroll.io~1scrape", value: "true"}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingAdmissionPolicyBinding
metadata: {name: bench-hand-written}
spec: {policyName: bench-hand-written}
`

// TestNativeLatencySideBySide measures Deployment creates (server-side
// dry-run) through the real kube-apiserver with no enrollment, with the
// webhook engine, with the native engine and with the hand-written policy,
// one client and eight, p50 and p99. A measurement, not a test: make
// bench-native runs it (PROMENROLL_BENCH_NATIVE=1) and prints the table.
func TestNativeLatencySideBySide(t *testing.T) {
	if os.Getenv("PROMENROLL_BENCH_NATIVE") == "" {
		t.Skip("a measurement: make bench-native runs it")
	}
	n := 400
	ns := "nat-bench"
	createNamespace(t, ns, map[string]string{"team": "payments"}, nil)
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = -1, 0 // no client-side throttling
	cl, err := client.New(cfg, client.Options{Scheme: c.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	native, _, err := c.Promenroll(t.Context(), "compile", "--policy", policyFile, "--namespace", cluster.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	deployment := func(i int) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("d-%d", i), Namespace: ns, Labels: map[string]string{"app": "bench"}},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bench"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "bench"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/app:1"}}}}}}
	}
	// enrollWebhook removes or restores the enroll webhook of the suite's
	// mutating configuration.
	var saved []byte
	run := func(stdin string, args ...string) string {
		t.Helper()
		// Not t.Context(): the cleanup runs this too.
		out, errOut, err := c.Kubectl(context.Background(), stdin, args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v: %s", args, err, errOut)
		}
		return out
	}
	enrollWebhook := func(on bool) {
		t.Helper()
		if saved == nil {
			saved = []byte(run("", "get", "mutatingwebhookconfiguration", "promenroll", "-o", "json"))
		}
		var cfg map[string]any
		if err := json.Unmarshal(saved, &cfg); err != nil {
			t.Fatal(err)
		}
		delete(cfg["metadata"].(map[string]any), "resourceVersion")
		if on {
			js, _ := json.Marshal(cfg)
			run(string(js), "replace", "-f", "-")
			return
		}
		var kept []any
		for _, w := range cfg["webhooks"].([]any) {
			if w.(map[string]any)["name"] != "enroll.promenroll.io" {
				kept = append(kept, w)
			}
		}
		cfg["webhooks"] = kept
		js, _ := json.Marshal(cfg)
		run(string(js), "replace", "-f", "-")
	}
	t.Cleanup(func() { enrollWebhook(true) })
	labelled := func() bool {
		d := deployment(0)
		if err := cl.Create(context.Background(), d, client.DryRunAll); err != nil {
			return false
		}
		return d.Labels["monitoring.promenroll.io/scrape"] == "true"
	}
	measure := func(conc int) (p50, p99 time.Duration) {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		per := n / conc
		for w := range conc {
			wg.Go(func() {
				for i := range per {
					start := time.Now()
					if err := cl.Create(context.Background(), deployment(w*per+i), client.DryRunAll); err != nil {
						t.Error(err)
						return
					}
					d := time.Since(start)
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(lat)
		return lat[len(lat)/2], lat[len(lat)*99/100]
	}
	// profile, with PROMENROLL_BENCH_PROFILE=<dir>, takes the API
	// server's CPU profile (its /debug/pprof, on by default) for 8 s of
	// eight clients creating, and writes it to <dir>/<name>.pb.gz for
	// `go tool pprof -top`.
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	profile := func(name string) {
		dir := os.Getenv("PROMENROLL_BENCH_PROFILE")
		if dir == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		load, stop := context.WithCancel(ctx)
		for w := range 8 {
			wg.Go(func() {
				for i := 0; load.Err() == nil && i < 100000; i++ {
					_ = cl.Create(load, deployment(100000*(w+1)+i), client.DryRunAll)
				}
			})
		}
		data, err := clientset.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", "8").DoRaw(ctx)
		stop()
		wg.Wait()
		if err != nil {
			t.Fatalf("profile %s: %v", name, err)
		}
		file := filepath.Join(dir, strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name)+".pb.gz")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: the API server's CPU profile is %s", name, file)
	}
	type row struct{ name, figures string }
	var rows []row
	scenario := func(name string, setup, teardown func(), enrolled bool) {
		setup()
		testwait.True(t, name+": in force", 30*time.Second, func() bool { return labelled() == enrolled })
		for range 50 {
			_ = labelled() // warm up
		}
		a50, a99 := measure(1)
		b50, b99 := measure(8)
		rows = append(rows, row{name, fmt.Sprintf("%v / %v | %v / %v", a50.Round(10*time.Microsecond), a99.Round(10*time.Microsecond), b50.Round(10*time.Microsecond), b99.Round(10*time.Microsecond))})
		profile(name)
		teardown()
	}
	// native20 is the native engine for the suite's policy with 16 more
	// rules that do not select the Deployments measured: what each rule
	// costs a request it does not enroll.
	var extra strings.Builder
	for i := range 16 {
		fmt.Fprintf(&extra, "- name: extra%d\n  kinds: [Deployment, StatefulSet, Service]\n  selector: {matchLabels: {bench.example/extra: \"%d\"}}\n  labels: {bench.example/extra%d: \"{namespaceLabel:team}\"}\n  podTemplateLabels: {bench.example/extra%d: \"{name}\"}\n", i, i, i, i)
	}
	rules20 := strings.Replace(basePolicy, "monitors:\n", extra.String()+"monitors:\n", 1)
	file20 := filepath.Join(t.TempDir(), "policy-20.yaml")
	if err := os.WriteFile(file20, []byte(rules20), 0o644); err != nil {
		t.Fatal(err)
	}
	native20, _, err := c.Promenroll(t.Context(), "compile", "--policy", file20, "--namespace", cluster.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	// The mutating policies alone (compile --warnings=false).
	mutating, _, err := c.Promenroll(t.Context(), "compile", "--policy", policyFile, "--namespace", cluster.Namespace, "--warnings=false")
	if err != nil {
		t.Fatal(err)
	}
	mutating20, _, err := c.Promenroll(t.Context(), "compile", "--policy", file20, "--namespace", cluster.Namespace, "--warnings=false")
	if err != nil {
		t.Fatal(err)
	}
	apply := func(doc string) func() { return func() { kubectl(t, doc, "apply", "-f", "-") } }
	remove := func(doc string) func() { return func() { kubectl(t, doc, "delete", "-f", "-") } }
	if n := strings.Count(rules20, "\n- name: "); n != 20 {
		t.Fatalf("the 20-rule policy has %d rules", n)
	}
	nothing := func() {}
	scenario("no enrollment", func() { enrollWebhook(false) }, nothing, false)
	scenario("webhook engine", func() { enrollWebhook(true) }, nothing, true)
	scenario("native engine, mutating only", func() { enrollWebhook(false); apply(mutating)() }, remove(mutating), true)
	scenario("native engine with warnings", apply(native), remove(native), true)
	scenario("native engine, 20 rules, mutating only", apply(mutating20), remove(mutating20), true)
	scenario("native engine, 20 rules, with warnings", apply(native20), remove(native20), true)
	scenario("hand-written policy", apply(handWrittenPolicy), remove(handWrittenPolicy), true)
	var b strings.Builder
	fmt.Fprintf(&b, "Deployment CREATE (server-side dry-run), %d requests each | 1 client p50 / p99 | 8 clients p50 / p99\n", n)
	for _, r := range rows {
		fmt.Fprintf(&b, "%s | %s\n", r.name, r.figures)
	}
	t.Log("\n" + b.String())
}
