package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestCheckAgreesWithTheAPIServer: what `promenroll check` refuses, the
// API server (its CRD schemas, then promenroll's webhooks) refuses too, and
// what check passes, kubectl apply accepts; each manifest is tried both
// ways.
func TestCheckAgreesWithTheAPIServer(t *testing.T) {
	createNamespace(t, "cli", nil, nil)
	manifests := map[string]string{
		"a valid rule": `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: valid, namespace: cli}
spec:
  groups: [{name: g, rules: [{alert: Down, expr: up == 0, for: 5m, labels: {severity: warning}}]}]
`,
		"a rule without expr (the CRD's schema)": `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: noexpr, namespace: cli}
spec:
  groups: [{name: g, rules: [{alert: Down, labels: {severity: warning}}]}]
`,
		"a rule that does not parse (the rule gate)": `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: broken, namespace: cli}
spec:
  groups: [{name: g, rules: [{alert: Down, expr: "up ==", labels: {severity: warning}}]}]
`,
		"a ServiceMonitor with an unknown field": `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: typo, namespace: cli}
spec:
  selector: {matchLabels: {app: web}}
  endpoints: [{port: metrics, intervall: 30s}]
`,
		"a PodMonitor of the wrong shape": `apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: shape, namespace: cli}
spec:
  selector: {matchLabels: {app: web}}
  podMetricsEndpoints: {port: metrics}
`,
		"a ServiceMonitor with a broken regex (the monitor gate)": `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: regex, namespace: cli}
spec:
  selector: {matchLabels: {app: web}}
  endpoints: [{port: metrics, relabelings: [{sourceLabels: [__name__], regex: "([a-z"}]}]
`,
		"a Deployment with an invalid name": `apiVersion: apps/v1
kind: Deployment
metadata: {name: Web_1, namespace: cli}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
`,
		"a valid Service": `apiVersion: v1
kind: Service
metadata: {name: web, namespace: cli}
spec: {selector: {app: web}, ports: [{name: metrics, port: 9090}]}
`,
	}
	policyPath := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(basePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, doc := range manifests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.yaml")
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			out, _, checkErr := c.Promenroll(t.Context(), "check", "--policy", policyPath, path)
			_, applyErr, err := c.Kubectl(t.Context(), doc, "apply", "--dry-run=server", "-f", "-")
			checkRefused, apiRefused := checkErr != nil, err != nil
			if checkRefused != apiRefused {
				t.Errorf("check refused: %v, API server refused: %v\ncheck:\n%s\nkubectl:\n%s", checkRefused, apiRefused, out, applyErr)
			}
		})
	}
}

// TestAuditPagesThroughTenThousandObjects: audit lists a namespace of
// 10,000 Services in pages, reports them, and changes nothing.
func TestAuditPagesThroughTenThousandObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 Services")
	}
	const n = 10000
	createNamespace(t, "audit-scale", nil, nil)
	// Opted out, so the mutating webhook is not asked 10,000 times.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Namespace: "audit-scale", Name: fmt.Sprintf("svc-%05d", i),
						Labels: map[string]string{"app.kubernetes.io/name": "svc", "promenroll.io/enroll": "false"}},
					Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "metrics", Port: 9090}}},
				}
				if err := c.Client.Create(context.Background(), svc); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("created %d Services in %v", n, time.Since(start).Round(time.Millisecond))
	objectsBefore := resourceVersions(t)

	policyPath := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyPath, []byte(basePolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	out, errOut, err := c.Promenroll(t.Context(), "audit", "--policy", policyPath, "--kubeconfig", c.Kubeconfig, "-n", "audit-scale", "--chunk-size", "500")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("audit: %v\n%s%s", err, tail(out, 5), errOut)
	}
	m := regexp.MustCompile(`audit: (\d+) workloads and Services scanned: (\d+) not fully enrolled.*\((\d+) list requests of at most 500 objects\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary:\n%s", tail(out, 5))
	}
	scanned, _ := strconv.Atoi(m[1])
	requests, _ := strconv.Atoi(m[3])
	if scanned != n {
		t.Errorf("scanned %d, want %d", scanned, n)
	}
	if requests < n/500 {
		t.Errorf("%d list requests for %d Services in pages of 500: not paginated", requests, n)
	}
	if d := diffVersions(objectsBefore, resourceVersions(t)); d != "" {
		t.Errorf("audit changed the cluster: %s", d)
	}
	t.Logf("audit of %d Services: %v, %d list requests", n, took.Round(time.Millisecond), requests)
}

func resourceVersions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	var l corev1.ServiceList
	if err := c.Client.List(t.Context(), &l, client.InNamespace("audit-scale")); err != nil {
		t.Fatal(err)
	}
	for _, s := range l.Items {
		out[s.Name] = s.ResourceVersion
	}
	return out
}

func diffVersions(a, b map[string]string) string {
	if len(a) != len(b) {
		return fmt.Sprintf("%d objects before, %d after", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			return fmt.Sprintf("%s changed (resourceVersion %s -> %s)", k, v, b[k])
		}
	}
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
