package e2e

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

// These tests run the real monitoring stack (test/cluster/monitoring.go):
// what they check is what Prometheus itself reports.

const (
	podPool     = "podMonitor/promenroll-system/promenroll-workloads/0"
	servicePool = "serviceMonitor/promenroll-system/promenroll-services/0"
	// settle bounds every wait for Prometheus: discovery, a 2s scrape
	// interval and the reload loop take a few seconds each.
	settle = 2 * time.Minute
)

var installMonitors sync.Once

// monitoringStack starts the stack (once for the suite) and installs the
// enrollment monitors from deploy/ as a user would.
func monitoringStack(t *testing.T) *cluster.Monitoring {
	t.Helper()
	m, err := c.Monitoring(t.Context())
	if err != nil {
		t.Fatalf("monitoring stack: %v\n%s", err, c.LogTails(40))
	}
	installMonitors.Do(func() {
		kubectl(t, "", "apply", "-k", filepath.Join(c.Root, "deploy", "base", "monitors"))
		for part, d := range m.Started {
			t.Logf("started: %s in %s", part, d.Round(time.Millisecond))
		}
		if m.PodNetworkNote != "" {
			t.Logf("pod IPs on loopback: %s", m.PodNetworkNote)
		}
	})
	return m
}

func needServiceEndpoints(t *testing.T, m *cluster.Monitoring) {
	t.Helper()
	if !m.ServicesHaveEndpoints() {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root with iproute2: the Service tests must run, but Services get no endpoints on loopback Pod IPs and the harness could not create its network namespace: %s", m.PodNetworkNote)
		}
		t.Skipf("Services get no endpoints on loopback Pod IPs, and the harness could not create its network namespace: %s", m.PodNetworkNote)
	}
}

// waitFor polls Prometheus until cond holds of its active and dropped
// targets, and fails with what it last saw.
func waitFor(t *testing.T, m *cluster.Monitoring, what string, cond func(active []cluster.Target, dropped []map[string]string) bool) {
	t.Helper()
	var active []cluster.Target
	var dropped []map[string]string
	var err error
	if testwait.Until(t.Context(), settle, func() (bool, error) {
		active, dropped, err = m.AllTargets(t.Context())
		return err == nil && cond(active, dropped), nil
	}) == nil {
		return
	}
	if err != nil {
		t.Fatalf("Prometheus: %s: not within %s: %v", what, settle, err)
	}
	var b strings.Builder
	for _, tg := range active {
		fmt.Fprintf(&b, "  %s %s %s %v %s\n", tg.ScrapePool, tg.ScrapeURL, tg.Health, tg.Labels, tg.LastError)
	}
	t.Fatalf("Prometheus: %s: not within %s. Active targets:\n%s%s", what, settle, b.String(), c.LogTails(20))
}

// upTarget waits for the one active target of pool in namespace ns whose
// pod name starts with podPrefix to be up, and returns it.
func upTarget(t *testing.T, m *cluster.Monitoring, pool, ns, podPrefix string) cluster.Target {
	t.Helper()
	var found cluster.Target
	waitFor(t, m, fmt.Sprintf("an up target of %s for pod %s/%s*", pool, ns, podPrefix), func(active []cluster.Target, _ []map[string]string) bool {
		for _, tg := range active {
			if tg.ScrapePool == pool && tg.Labels["namespace"] == ns && strings.HasPrefix(tg.Labels["pod"], podPrefix) && tg.Health == "up" {
				found = tg
				return true
			}
		}
		return false
	})
	return found
}

// discoveredButNotScraped waits until Prometheus has discovered (and
// dropped) pool's targets for the pods of ns/podPrefix, then checks that
// pool has none of them active: the absence is then a decision, not a
// delay.
func discoveredButNotScraped(t *testing.T, m *cluster.Monitoring, pool, ns, podPrefix string) {
	t.Helper()
	waitFor(t, m, fmt.Sprintf("%s discovers pod %s/%s*", pool, ns, podPrefix), func(_ []cluster.Target, dropped []map[string]string) bool {
		for _, d := range dropped {
			if d["__scrape_pool__"] == pool && d["__meta_kubernetes_namespace"] == ns && strings.HasPrefix(d["__meta_kubernetes_pod_name"], podPrefix) {
				return true
			}
		}
		return false
	})
	active, _, err := m.AllTargets(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range active {
		if tg.ScrapePool == pool && tg.Labels["namespace"] == ns && strings.HasPrefix(tg.Labels["pod"], podPrefix) {
			t.Errorf("pod %s is scraped by %s (%s), want no target", tg.Labels["pod"], tg.ScrapePool, tg.ScrapeURL)
		}
	}
}

// workload is a Deployment with one container and the given ports
// (name:number) and pod template annotations, and no monitoring labels.
func workload(ns, name string, labels, annotations map[string]string, ports ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\n  namespace: %s\n  labels: {app: %s", name, ns, name)
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(&b, ", %q: %q", k, labels[k])
	}
	fmt.Fprintf(&b, "}\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: %s}\n  template:\n    metadata:\n      labels: {app: %s}\n", name, name)
	if len(annotations) > 0 {
		b.WriteString("      annotations:\n")
		for _, k := range slices.Sorted(maps.Keys(annotations)) {
			fmt.Fprintf(&b, "        %q: %q\n", k, annotations[k])
		}
	}
	fmt.Fprintf(&b, "    spec:\n      containers:\n      - name: app\n        image: registry.example/%s:1.0\n", name)
	if len(ports) > 0 {
		b.WriteString("        ports:\n")
		for _, p := range ports {
			n, num, _ := strings.Cut(p, ":")
			fmt.Fprintf(&b, "        - {name: %s, containerPort: %s}\n", n, num)
		}
	}
	return b.String()
}

func service(ns, name, port, targetPort string, labels map[string]string) string {
	var l []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		l = append(l, fmt.Sprintf("%q: %q", k, labels[k]))
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: %s
  labels: {%s}
spec:
  selector: {app: %s}
  ports: [{name: %s, port: 80, targetPort: %s}]
`, name, ns, strings.Join(l, ", "), name, port, targetPort)
}

func TestAnEnrolledDeploymentBecomesAnUpTarget(t *testing.T) {
	m := monitoringStack(t)
	ns := "scrape-pods"
	createNamespace(t, ns, nil, nil)

	applied := time.Now()
	kubectl(t, workload(ns, "plain", nil, nil, "metrics:9090"), "apply", "-f", "-")
	tg := upTarget(t, m, podPool, ns, "plain-")
	t.Logf("measured: kubectl apply of a Deployment to its first successful scrape: %s", time.Since(applied).Round(100*time.Millisecond))
	if tg.Labels["job"] != "promenroll-system/promenroll-workloads" || tg.Labels["endpoint"] != "metrics" || tg.Labels["container"] != "app" {
		t.Errorf("target labels %v: want job promenroll-system/promenroll-workloads, endpoint metrics, container app", tg.Labels)
	}
	if !strings.HasSuffix(tg.ScrapeURL, ":9090/metrics") {
		t.Errorf("scrape URL %s, want port 9090 and /metrics", tg.ScrapeURL)
	}
	waitForQuery(t, m, fmt.Sprintf(`up{namespace=%q, pod=%q} == 1`, ns, tg.Labels["pod"]))

	t.Run("prometheus.io/port and path annotations choose port and path", func(t *testing.T) {
		kubectl(t, workload(ns, "annotated", nil, map[string]string{"prometheus.io/port": "8080", "prometheus.io/path": "/custom/metrics"}, "web:8080", "metrics:9090"), "apply", "-f", "-")
		tg := upTarget(t, m, podPool, ns, "annotated-")
		if !strings.HasSuffix(tg.ScrapeURL, ":8080/custom/metrics") {
			t.Errorf("scrape URL %s, want port 8080 and /custom/metrics", tg.ScrapeURL)
		}
		assertScrapedAt(t, m, tg, "/custom/metrics")
		active, _, _ := m.AllTargets(t.Context())
		for _, a := range active {
			if strings.HasPrefix(a.Labels["pod"], "annotated-") && strings.Contains(a.ScrapeURL, ":9090") {
				t.Errorf("the metrics port is scraped too (%s): the annotation must override the port name", a.ScrapeURL)
			}
		}
	})

	t.Run("a policy rule's scrape setting is written and honoured", func(t *testing.T) {
		kubectl(t, workload(ns, "envoy", map[string]string{"app.kubernetes.io/name": "envoy"}, nil, "admin:9901", "http:8080"), "apply", "-f", "-")
		tg := upTarget(t, m, podPool, ns, "envoy-")
		if !strings.HasSuffix(tg.ScrapeURL, ":9901/stats/prometheus") {
			t.Errorf("scrape URL %s, want the rule's port admin (9901) and path /stats/prometheus", tg.ScrapeURL)
		}
		assertScrapedAt(t, m, tg, "/stats/prometheus")
	})

	t.Run("a port annotation naming no port is warned about and yields no target", func(t *testing.T) {
		_, errOut := kubectl(t, workload(ns, "typo", nil, map[string]string{"prometheus.io/port": "metrcs"}, "metrics:9090"), "apply", "-f", "-")
		if !strings.Contains(errOut, `Warning: spec.template.metadata.annotations[prometheus.io/port]="metrcs": no container port is named or numbered metrcs`) {
			t.Errorf("kubectl printed no warning naming the annotation:\n%s", errOut)
		}
		discoveredButNotScraped(t, m, podPool, ns, "typo-")
	})
}

func assertScrapedAt(t *testing.T, m *cluster.Monitoring, tg cluster.Target, path string) {
	t.Helper()
	addr := strings.TrimPrefix(strings.TrimPrefix(tg.ScrapeURL, "http://"), "https://")
	addr, _, _ = strings.Cut(addr, "/")
	if hits := m.Hits(addr); !slices.Contains(hits, path) {
		t.Errorf("the pod at %s was scraped on %v, want %s", addr, hits, path)
	}
}

func waitForQuery(t *testing.T, m *cluster.Monitoring, q string) {
	t.Helper()
	testwait.For(t, "query "+q+" returns a series", settle, func() (bool, error) {
		rows, err := m.Query(t.Context(), q)
		return len(rows) > 0, err
	})
}

func TestAnEnrolledServiceIsScrapedOnceAndThePodWins(t *testing.T) {
	m := monitoringStack(t)
	needServiceEndpoints(t, m)
	ns := "scrape-services"
	createNamespace(t, ns, nil, nil)
	svcLabels := map[string]string{"app.kubernetes.io/name": "x"}

	t.Run("a Service port http-metrics in front of a Deployment is a ServiceMonitor target", func(t *testing.T) {
		kubectl(t, workload(ns, "behind", nil, nil, "web:8080")+"---\n"+service(ns, "behind", "http-metrics", "web", svcLabels), "apply", "-f", "-")
		tg := upTarget(t, m, servicePool, ns, "behind-")
		if tg.Labels["service"] != "behind" || tg.Labels["job"] != "behind" || tg.Labels["endpoint"] != "http-metrics" {
			t.Errorf("target labels %v: want service and job behind, endpoint http-metrics", tg.Labels)
		}
		discoveredButNotScraped(t, m, podPool, ns, "behind-")
	})

	t.Run("a pod port both monitors could scrape is scraped once, by the PodMonitor", func(t *testing.T) {
		kubectl(t, workload(ns, "both", nil, nil, "metrics:9090")+"---\n"+service(ns, "both", "http-metrics", "metrics", svcLabels), "apply", "-f", "-")
		upTarget(t, m, podPool, ns, "both-")
		discoveredButNotScraped(t, m, servicePool, ns, "both-")
		active, _, _ := m.AllTargets(t.Context())
		n := 0
		for _, a := range active {
			if strings.HasPrefix(a.Labels["pod"], "both-") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the pod is scraped by %d targets, want 1", n)
		}
	})
}

func TestNoTargetWhenOptedOutExcludedOrDryRun(t *testing.T) {
	m := monitoringStack(t)
	createNamespace(t, "scrape-optout", nil, nil)
	// legacy is in the policy's excludeNamespaces; an earlier test may have made it.
	if err := c.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	createNamespace(t, "scrape-dry-run", nil, map[string]string{"promenroll.io/mode": "dry-run"})

	kubectl(t, workload("scrape-optout", "optout", map[string]string{"promenroll.io/enroll": "false"}, nil, "metrics:9090"), "apply", "-f", "-")
	kubectl(t, workload("legacy", "excluded", nil, nil, "metrics:9090"), "apply", "-f", "-")
	_, errOut := kubectl(t, workload("scrape-dry-run", "dry", nil, nil, "metrics:9090"), "apply", "-f", "-")
	if !strings.Contains(errOut, "Warning: [dry-run] would add") {
		t.Errorf("the dry-run namespace printed no dry-run warning:\n%s", errOut)
	}
	discoveredButNotScraped(t, m, podPool, "scrape-optout", "optout-")
	discoveredButNotScraped(t, m, podPool, "legacy", "excluded-")
	discoveredButNotScraped(t, m, podPool, "scrape-dry-run", "dry-")
}

func TestAnAdmittedRuleIsLoadedByPrometheus(t *testing.T) {
	m := monitoringStack(t)
	ns := "rules-e2e"
	createNamespace(t, ns, nil, nil)
	good := fmt.Sprintf(`apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: shop-alerts, namespace: %s}
spec:
  groups:
  - name: shop.loaded
    rules:
    - alert: ShopDown
      expr: up{job="shop"} == 0
      for: 5m
      labels: {severity: critical}
`, ns)
	kubectl(t, good, "apply", "-f", "-")
	var pr monv1.PrometheusRule
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "shop-alerts"}, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.Labels["release"] != cluster.ReleaseLabel {
		t.Fatalf("the rule was admitted without the release label: %v", pr.Labels)
	}
	broken := strings.NewReplacer("shop-alerts", "shop-broken", "shop.loaded", "shop.broken", `up{job="shop"} == 0`, `sum(rate(x[5m]) > 1`).Replace(good)
	if _, errOut, err := c.Kubectl(t.Context(), broken, "apply", "-f", "-"); err == nil {
		t.Fatal("the broken rule was admitted")
	} else if !strings.Contains(errOut, `The PrometheusRule "shop-broken" is invalid`) {
		t.Fatalf("unexpected refusal: %s", errOut)
	}

	var groups []cluster.RuleGroup
	if err := testwait.Until(t.Context(), settle, func() (ok bool, err error) {
		groups, err = m.RuleGroups(t.Context())
		return slices.ContainsFunc(groups, func(g cluster.RuleGroup) bool { return g.Name == "shop.loaded" }), err
	}); err != nil {
		t.Fatalf("Prometheus did not load group shop.loaded within %s (groups %v): %v\n%s", settle, groups, err, c.LogTails(20))
	}
	if slices.ContainsFunc(groups, func(g cluster.RuleGroup) bool { return g.Name == "shop.broken" }) {
		t.Error("the refused rule group reached Prometheus")
	}
}

func TestAUserServiceMonitorWithoutReleaseIsLabelledAndScraped(t *testing.T) {
	m := monitoringStack(t)
	needServiceEndpoints(t, m)
	ns := "user-monitors"
	createNamespace(t, ns, nil, nil)
	sm := fmt.Sprintf(`apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: shop, namespace: %s}
spec:
  selector: {matchLabels: {team: shop}}
  endpoints: [{port: web}]
`, ns)
	kubectl(t, workload(ns, "shop", nil, nil, "web:8080")+"---\n"+service(ns, "shop", "web", "web", map[string]string{"team": "shop"})+"---\n"+sm, "apply", "-f", "-")
	var got monv1.ServiceMonitor
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "shop"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Labels["release"] != cluster.ReleaseLabel {
		t.Fatalf("the ServiceMonitor was admitted without the release label: %v", got.Labels)
	}
	tg := upTarget(t, m, "serviceMonitor/"+ns+"/shop/0", ns, "shop-")
	if tg.Labels["service"] != "shop" {
		t.Errorf("target labels %v", tg.Labels)
	}
}

func TestMonitorGate(t *testing.T) {
	t.Run("a ServiceMonitor with a broken regex is refused and kubectl names the field", func(t *testing.T) {
		bad := `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: broken-regex, namespace: default}
spec:
  selector: {matchLabels: {app: shop}}
  endpoints:
  - port: metrics
    relabelings:
    - {sourceLabels: [__meta_kubernetes_pod_name], regex: "([a-z", action: keep}
`
		_, errOut, err := c.Kubectl(t.Context(), bad, "apply", "-f", "-")
		if err == nil {
			t.Fatal("the broken ServiceMonitor was admitted")
		}
		for _, want := range []string{`The ServiceMonitor "broken-regex" is invalid`, "spec.endpoints[0].relabelings[0].regex", "not a valid RE2 regular expression"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("kubectl's message does not contain %q:\n%s", want, errOut)
			}
		}
	})
	t.Run("a ServiceMonitor whose port names no Service port is admitted with a warning naming the ports", func(t *testing.T) {
		kubectl(t, `apiVersion: v1
kind: Service
metadata: {name: gate-svc, namespace: default, labels: {app: gate}}
spec:
  selector: {app: gate}
  ports: [{name: http, port: 80}]
`, "apply", "-f", "-")
		sm := `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: gate-port, namespace: default}
spec:
  selector: {matchLabels: {app: gate}}
  endpoints: [{port: metrics}]
`
		want := `Warning: spec.endpoints[0].port: Invalid value: "metrics": names no port of the selected Services (Service gate-svc: http)`
		// promenroll reads Services from its informer cache: wait (bounded)
		// until it has seen the new one.
		testwait.For(t, fmt.Sprintf("the warning %q", want), 20*time.Second, func() (bool, error) {
			_, errOut := kubectl(t, sm, "apply", "--dry-run=server", "-f", "-")
			return strings.Contains(errOut, want), errors.New(errOut)
		})
		out, _ := kubectl(t, sm, "apply", "-f", "-")
		if !strings.Contains(out, "servicemonitor.monitoring.coreos.com/gate-port created") {
			t.Errorf("the ServiceMonitor was not stored: %s", out)
		}
	})
	t.Run("a ServiceMonitor created before its Service gets only a warning", func(t *testing.T) {
		out, errOut := kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: gate-early, namespace: default}
spec:
  selector: {matchLabels: {app: not-yet}}
  endpoints: [{port: metrics}]
`, "apply", "-f", "-")
		if !strings.Contains(out, "created") || !strings.Contains(errOut, `Warning: spec.selector: Invalid value: "app=not-yet": matches no Service in namespace default`) {
			t.Errorf("want stored with a warning; stdout %q stderr %q", out, errOut)
		}
	})
	t.Run("kube-prometheus' ServiceMonitors are admitted", func(t *testing.T) {
		// They live in monitoring, which TestRuleGate may have made.
		if err := c.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		out, _ := kubectl(t, "", "apply", "--dry-run=server", "-f", filepath.Join(c.Root, "policy", "testdata", "monitors", "kube-prometheus"))
		if n := strings.Count(out, "servicemonitor.monitoring.coreos.com/"); n != 13 {
			t.Errorf("%d ServiceMonitors admitted, want 13:\n%s", n, out)
		}
	})
}
