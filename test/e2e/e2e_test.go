package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testwait"
)

const scrape = "monitoring.promenroll.io/scrape"

func createNamespace(t *testing.T, name string, labels, annotations map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	if err := c.Client.Create(t.Context(), ns); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
}

func kubectl(t *testing.T, stdin string, args ...string) (string, string) {
	t.Helper()
	out, errOut, err := c.Kubectl(t.Context(), stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out, errOut
}

func deploymentYAML(ns string, extraLabels string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  namespace: %s
  labels:
    app.kubernetes.io/name: api%s
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: api}
  template:
    metadata:
      labels: {app.kubernetes.io/name: api}
    spec:
      containers:
      - name: api
        image: registry.example/api:1.0
`, ns, extraLabels)
}

func serviceYAML(ns string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: %s
  labels: {app.kubernetes.io/name: api}
spec:
  selector: {app.kubernetes.io/name: api}
  ports: [{port: 80, targetPort: 8080}]
`, ns)
}

func getDeployment(t *testing.T, ns string) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "api"}, &d); err != nil {
		t.Fatal(err)
	}
	return &d
}

func TestKubectlApplyEnrollsWorkloadsAndServices(t *testing.T) {
	ns := "shop"
	createNamespace(t, ns, map[string]string{"team": "payments"}, nil)
	manifest := deploymentYAML(ns, "") + "---\n" + serviceYAML(ns)
	kubectl(t, manifest, "apply", "-f", "-")

	d := getDeployment(t, ns)
	if d.Labels[scrape] != "true" || d.Spec.Template.Labels[scrape] != "true" {
		t.Errorf("Deployment not enrolled: labels %v, pod template labels %v", d.Labels, d.Spec.Template.Labels)
	}
	if diff := cmp.Diff(map[string]string{"app.kubernetes.io/name": "api"}, d.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("spec.selector changed (-want +got):\n%s", diff)
	}
	var svc corev1.Service
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "api"}, &svc); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"app.kubernetes.io/name": "api", scrape: "true", "team": "payments"}, svc.Labels); diff != "" {
		t.Errorf("Service labels (-want +got):\n%s", diff)
	}

	t.Run("a second apply changes nothing", func(t *testing.T) {
		before := getDeployment(t, ns).ResourceVersion
		out, _ := kubectl(t, manifest, "apply", "-f", "-")
		if strings.Count(out, "unchanged") != 2 {
			t.Errorf("second apply was not a no-op:\n%s", out)
		}
		if after := getDeployment(t, ns).ResourceVersion; after != before {
			t.Errorf("resourceVersion %s -> %s", before, after)
		}
	})

	t.Run("server-side dry-run shows the same labels", func(t *testing.T) {
		out, _ := kubectl(t, strings.Replace(deploymentYAML(ns, ""), "name: api\n", "name: api-preview\n", 1), "apply", "--dry-run=server", "-o", "yaml", "-f", "-")
		var preview appsv1.Deployment
		if err := yaml.Unmarshal([]byte(out), &preview); err != nil {
			t.Fatal(err)
		}
		if preview.Labels[scrape] != "true" || preview.Spec.Template.Labels[scrape] != "true" {
			t.Errorf("dry-run output not enrolled:\n%s", out)
		}
		var stored appsv1.Deployment
		if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "api-preview"}, &stored); err == nil {
			t.Error("server-side dry-run stored the object")
		}
	})

	t.Run("kubectl replace without the labels gets them back", func(t *testing.T) {
		stored := getDeployment(t, ns)
		before := stored.DeepCopy()
		stored.Labels = map[string]string{"app.kubernetes.io/name": "api"}
		stored.Spec.Template.Labels = map[string]string{"app.kubernetes.io/name": "api"}
		stored.ManagedFields = nil
		stored.APIVersion, stored.Kind = "apps/v1", "Deployment"
		data, err := yaml.Marshal(stored)
		if err != nil {
			t.Fatal(err)
		}
		kubectl(t, string(data), "replace", "-f", "-")
		d := getDeployment(t, ns)
		if d.Labels[scrape] != "true" || d.Spec.Template.Labels[scrape] != "true" {
			t.Errorf("labels not put back: %v / %v", d.Labels, d.Spec.Template.Labels)
		}
		// The pod template is what it was: no rollout.
		if diff := cmp.Diff(before.Spec.Template, d.Spec.Template); diff != "" {
			t.Errorf("pod template changed (-before +after):\n%s", diff)
		}
	})
}

func TestOptOutAndExcludedNamespacesAreUntouched(t *testing.T) {
	createNamespace(t, "optout-object", nil, nil)
	createNamespace(t, "optout-namespace", map[string]string{"promenroll.io/enroll": "false"}, nil)
	createNamespace(t, "legacy", nil, nil)
	for _, tc := range []struct{ name, ns, extra string }{
		{"the object's opt-out label", "optout-object", "\n    promenroll.io/enroll: \"false\""},
		{"the namespace's opt-out label", "optout-namespace", ""},
		{"a namespace excluded by the policy", "legacy", ""},
		{"kube-system", "kube-system", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kubectl(t, deploymentYAML(tc.ns, tc.extra), "apply", "-f", "-")
			d := getDeployment(t, tc.ns)
			if _, ok := d.Labels[scrape]; ok {
				t.Errorf("labels %v", d.Labels)
			}
			if _, ok := d.Spec.Template.Labels[scrape]; ok {
				t.Errorf("pod template labels %v", d.Spec.Template.Labels)
			}
		})
	}
}

func TestRuleGate(t *testing.T) {
	createNamespace(t, "monitoring", nil, nil)

	t.Run("a broken PrometheusRule is refused and kubectl names the field and the PromQL error", func(t *testing.T) {
		bad := `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: broken, namespace: monitoring}
spec:
  groups:
  - name: api
    rules:
    - alert: APIErrors
      expr: sum(rate(http_requests_total[5m]) > 1
      labels: {severity: critical}
    - alert: APISlow
      expr: histogram_quantile(0.99, rate(http_request_duration_seconds_bucket[5m])) > 1
      labels: {severity: page}
`
		out, errOut, err := c.Kubectl(t.Context(), bad, "apply", "-f", "-")
		if err == nil {
			t.Fatalf("a broken PrometheusRule was admitted:\n%s", out)
		}
		// kubectl prints a 422 Invalid status as its causes, one a line.
		for _, want := range []string{
			`The PrometheusRule "broken" is invalid`,
			"* spec.groups[0].rules[0].expr: Invalid value: could not parse expression: 1:38: parse error: unclosed left parenthesis",
			`* spec.groups[0].rules[1].labels[severity]: Unsupported value: "page"`,
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("kubectl output does not contain %q:\n%s", want, errOut)
			}
		}
		// Argo CD, Flux and client-go users see the status message: it
		// lists the problems too.
		var pr monv1.PrometheusRule
		if err := yaml.Unmarshal([]byte(bad), &pr); err != nil {
			t.Fatal(err)
		}
		err = c.Client.Create(t.Context(), &pr)
		if err == nil {
			t.Fatal("client-go create of a broken PrometheusRule succeeded")
		}
		for _, want := range []string{
			`admission webhook "rules.promenroll.io" denied the request: PrometheusRule "broken" is invalid: 2 problem(s): spec.groups[0].rules[0].expr`,
			`spec.groups[0].rules[1].labels[severity]: Unsupported value: "page"`,
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("API error %q does not contain %q", err, want)
			}
		}
	})

	t.Run("kube-prometheus' largest PrometheusRule is stored", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join(c.Root, "policy", "testdata", "rules", "default", "kube-prometheus", "kubernetesControlPlane.good.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		kubectl(t, string(data), "apply", "--server-side", "-f", "-")
		var pr monv1.PrometheusRule
		if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: "monitoring", Name: "kubernetes-monitoring-rules"}, &pr); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, g := range pr.Spec.Groups {
			n += len(g.Rules)
		}
		if n < 100 {
			t.Errorf("stored %d rules", n)
		}
		if pr.Labels["release"] != "kube-prometheus-stack" {
			t.Errorf("PrometheusRule labels %v: monitors.labels not added", pr.Labels)
		}
	})

	t.Run("a ServiceMonitor gets the policy's monitors.labels", func(t *testing.T) {
		kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: api, namespace: monitoring, labels: {app: api}}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: api}}
  endpoints: [{port: http}]
`, "apply", "-f", "-")
		var sm monv1.ServiceMonitor
		if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: "monitoring", Name: "api"}, &sm); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]string{"app": "api", "release": "kube-prometheus-stack"}, sm.Labels); diff != "" {
			t.Errorf("ServiceMonitor labels (-want +got):\n%s", diff)
		}
	})

	t.Run("a numeric severity is coerced to a string and admitted", func(t *testing.T) {
		kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: numeric, namespace: monitoring}
spec:
  groups:
  - name: numeric
    rules:
    - alert: Numeric
      expr: up == 0
      labels: {severity: critical, priority: 1}
`, "apply", "-f", "-")
		var pr monv1.PrometheusRule
		if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: "monitoring", Name: "numeric"}, &pr); err != nil {
			t.Fatal(err)
		}
		if got := pr.Spec.Groups[0].Rules[0].Labels["priority"]; got != "1" {
			t.Errorf("priority = %q, want \"1\"", got)
		}
	})
}

func TestDryRunNamespace(t *testing.T) {
	createNamespace(t, "sandbox", map[string]string{"team": "lab"}, map[string]string{"promenroll.io/mode": "dry-run"})
	_, errOut := kubectl(t, deploymentYAML("sandbox", ""), "apply", "-f", "-")
	if !strings.Contains(errOut, "Warning: [dry-run] would add metadata.labels monitoring.promenroll.io/scrape=true (rule workloads)") {
		t.Errorf("kubectl printed no [dry-run] warning:\n%s", errOut)
	}
	d := getDeployment(t, "sandbox")
	if _, ok := d.Labels[scrape]; ok {
		t.Errorf("dry-run mutated the object: %v", d.Labels)
	}
	_, errOut, err := c.Kubectl(t.Context(), `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: broken, namespace: sandbox}
spec:
  groups:
  - name: x
    rules:
    - alert: X
      expr: up ==
      labels: {severity: info}
`, "apply", "-f", "-")
	if err != nil {
		t.Fatalf("dry-run refused a PrometheusRule: %s", errOut)
	}
	if !strings.Contains(errOut, "Warning: [dry-run] would deny PrometheusRule broken") {
		t.Errorf("no [dry-run] denial warning:\n%s", errOut)
	}
}

func TestPolicyHotReload(t *testing.T) {
	createNamespace(t, "reload", nil, nil)
	t.Cleanup(func() { _ = os.WriteFile(policyFile, []byte(basePolicy), 0o644) })
	updated := strings.Replace(basePolicy, "  podTemplateLabels:\n", "    reloaded: \"yes\"\n  podTemplateLabels:\n", 1)
	replacePolicyFile(t, updated)
	probes := 0
	testwait.True(t, "the new policy is in force after the file changed", 30*time.Second, func() bool {
		name := fmt.Sprintf("probe-%d", probes)
		probes++
		kubectl(t, strings.Replace(deploymentYAML("reload", ""), "name: api\n", "name: "+name+"\n", 1), "apply", "-f", "-")
		var d appsv1.Deployment
		if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: "reload", Name: name}, &d); err != nil {
			t.Fatal(err)
		}
		return d.Labels["reloaded"] == "yes"
	})

	// An invalid policy is refused; the last good one stays in force.
	if err := os.WriteFile(policyFile, []byte("apiVersion: promenroll.io/v1alpha1\nkind: Policy\nenroll:\n- name: x\n  kinds: [Pod]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testwait.True(t, "the failed reload is counted", 30*time.Second, func() bool {
		return strings.Contains(metrics(t), `promenroll_policy_reloads_total{result="error"} 1`)
	})
	kubectl(t, strings.Replace(deploymentYAML("reload", ""), "name: api\n", "name: after-bad-policy\n", 1), "apply", "-f", "-")
	var d appsv1.Deployment
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: "reload", Name: "after-bad-policy"}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Labels["reloaded"] != "yes" {
		t.Errorf("the last good policy is not in force after an invalid edit: %v", d.Labels)
	}
}

func metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(c.MetricsURL())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestCertificateRotationUnderLoad(t *testing.T) {
	createNamespace(t, "rotation", nil, nil)
	before, err := c.ServingSerial()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Server-side dry-run: goes through the webhooks, stores nothing.
				d := &appsv1.Deployment{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("load-%d-%d", w, i), Namespace: "rotation", Labels: map[string]string{"app": "load"}},
					Spec: appsv1.DeploymentSpec{
						Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "load"}},
						Template: corev1.PodTemplateSpec{
							ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "load"}},
							Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.example/c:1"}}},
						},
					},
				}
				err := c.Client.Create(ctx, d, client.DryRunAll)
				sent.Add(1)
				if err != nil || d.Labels[scrape] != "true" {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v (labels %v)", err, d.Labels))
				}
			}
		}()
	}
	// Requests are flowing on the old certificate before it is rotated...
	testwait.True(t, "requests through the webhook on the old certificate", 30*time.Second, func() bool { return sent.Load() >= 20 })
	want, err := c.RotateCertificate()
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, fmt.Sprintf("promenroll serves the rotated serial %v (was %v)", want, before), 30*time.Second, func() (bool, error) {
		got, err := c.ServingSerial()
		return err == nil && got.Cmp(want) == 0, err
	})
	// ...and keep completing once the new one is served.
	atSwitch := sent.Load()
	testwait.True(t, "requests through the webhook on the new certificate", 30*time.Second, func() bool { return sent.Load() >= atSwitch+20 })
	close(stop)
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of %d requests failed or were not enrolled during rotation; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	t.Logf("%d requests through the webhook during rotation, none failed", sent.Load())
}

func TestDeployManifestsAreAcceptedByTheAPIServer(t *testing.T) {
	// Server-side dry-run of the whole install (base, which manages its
	// own TLS, and the cert-manager and dry-run overlays): every object
	// validated by the real API server against the real CRDs, nothing
	// stored.
	// The webhook configurations are renamed: the suite runs the same ones,
	// pointed at the local promenroll, under their real names.
	createNamespace(t, "promenroll-system", nil, nil)
	for overlay, extra := range map[string][]string{
		"base":         {"secret/promenroll-tls", "role.rbac.authorization.k8s.io/promenroll-tls", "clusterrole.rbac.authorization.k8s.io/promenroll-tls"},
		"dry-run":      {"secret/promenroll-tls"},
		"cert-manager": {"certificate.cert-manager.io/promenroll", "issuer.cert-manager.io/promenroll-selfsigned"},
	} {
		rendered, _ := kubectl(t, "", "kustomize", filepath.Join(c.Root, "deploy", overlay))
		rendered = strings.ReplaceAll(rendered, "  name: promenroll\nwebhooks:", "  name: promenroll-manifest-check\nwebhooks:")
		out, _ := kubectl(t, rendered, "apply", "--dry-run=server", "-f", "-")
		for _, kind := range append(extra, "deployment.apps/promenroll",
			"mutatingwebhookconfiguration.admissionregistration.k8s.io/promenroll-manifest-check", "validatingwebhookconfiguration.admissionregistration.k8s.io/promenroll-manifest-check",
			"servicemonitor.monitoring.coreos.com/promenroll", "prometheusrule.monitoring.coreos.com/promenroll", "poddisruptionbudget.policy/promenroll") {
			if !strings.Contains(out, kind) {
				t.Errorf("%s: %s not applied:\n%s", overlay, kind, out)
			}
		}
	}
}

func TestServingTLS(t *testing.T) {
	t.Run("TLS below 1.2 is refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", c.WebhookAddr(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}) //nolint:gosec // probing the server
		if err == nil {
			conn.Close()
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
	})
	t.Run("HTTP/2 is off by default", func(t *testing.T) {
		conn, err := tls.Dial("tcp", c.WebhookAddr(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // probing the server
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if p := conn.ConnectionState().NegotiatedProtocol; p != "http/1.1" {
			t.Errorf("negotiated %q, want http/1.1", p)
		}
	})
}

func TestGracefulShutdown(t *testing.T) {
	createNamespace(t, "shutdown", nil, nil)
	c.StopWebhook()
	if err := c.StartWebhook(t.Context(), "--shutdown-delay", "3s"); err != nil {
		t.Fatal(err)
	}
	// Restarted against a control plane full of the suite's objects.
	t.Logf("measured: promenroll serve ready %v after its process started (readyz polled every 10ms)", c.ReadyAfter().Round(time.Millisecond))
	t.Cleanup(func() {
		c.StopWebhook()
		if err := c.StartWebhook(context.Background()); err != nil {
			t.Errorf("restart promenroll: %v", err)
		}
	})
	wait := c.BeginStopWebhook()
	// Readiness drops at once, so endpoints stop sending new requests...
	testwait.True(t, "/readyz fails after the stop signal", 2*time.Second, func() bool { return c.Readyz() != http.StatusOK })
	// ...while requests already routed here are still served.
	kubectl(t, deploymentYAML("shutdown", ""), "apply", "-f", "-")
	if getDeployment(t, "shutdown").Labels[scrape] != "true" {
		t.Error("a request during the shutdown delay was not served")
	}
	if code := wait(); code != 0 {
		t.Errorf("promenroll exited with %d after SIGTERM, want 0", code)
	}
}

// TestWebhookDown must run last: it stops promenroll (and restarts it).
func TestWebhookDown(t *testing.T) {
	createNamespace(t, "outage", nil, nil)
	c.StopWebhook()
	t.Cleanup(func() {
		if err := c.StartWebhook(context.Background()); err != nil {
			t.Errorf("restart promenroll: %v", err)
		}
	})

	t.Run("Deployments are still admitted (mutating failurePolicy Ignore)", func(t *testing.T) {
		kubectl(t, deploymentYAML("outage", ""), "apply", "-f", "-")
		if _, ok := getDeployment(t, "outage").Labels[scrape]; ok {
			t.Error("enrolled with promenroll down?")
		}
	})
	t.Run("PrometheusRules are refused with a clear error (validating failurePolicy Fail)", func(t *testing.T) {
		_, errOut, err := c.Kubectl(t.Context(), `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: during-outage, namespace: outage}
spec:
  groups:
  - name: x
    rules:
    - alert: X
      expr: up == 0
      labels: {severity: info}
`, "apply", "-f", "-")
		if err == nil {
			t.Fatal("a PrometheusRule was admitted without validation")
		}
		if !strings.Contains(errOut, `failed calling webhook "rules.promenroll.io"`) {
			t.Errorf("unclear error:\n%s", errOut)
		}
	})
}

// TestAudit scans the cluster with a stricter policy than the webhook's:
// a Deployment created while promenroll was down, and a stored rule the
// stricter policy refuses.
func TestAudit(t *testing.T) {
	createNamespace(t, "audit", nil, map[string]string{})
	kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: terse, namespace: audit}
spec:
  groups:
  - name: terse
    rules:
    - alert: Terse
      expr: up == 0
      labels: {severity: warning}
`, "apply", "-f", "-")
	// kube-prometheus-stack's Prometheus: release label, all namespaces.
	kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: kps, namespace: audit}
spec:
  serviceMonitorSelector: {matchLabels: {release: kube-prometheus-stack}}
  serviceMonitorNamespaceSelector: {}
  ruleSelector: {matchLabels: {release: kube-prometheus-stack}}
  ruleNamespaceSelector: {}
`, "apply", "-f", "-")
	// An opted-out ServiceMonitor does not get the release label (the
	// mutating webhooks' objectSelector skips it), so no Prometheus loads
	// it; audit must say so.
	hidden := `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: hidden, namespace: audit, labels: {promenroll.io/enroll: "false"}}
spec:
  selector: {matchLabels: {app: hidden}}
  endpoints: [{port: http}]
`
	kubectl(t, hidden, "apply", "-f", "-")
	c.StopWebhook()
	kubectl(t, deploymentYAML("audit", ""), "apply", "-f", "-")
	if err := c.StartWebhook(t.Context()); err != nil {
		t.Fatal(err)
	}

	strict := filepath.Join(t.TempDir(), "audit-policy.yaml")
	if err := os.WriteFile(strict, []byte(basePolicy+"    alertAnnotations: [summary]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := c.Promenroll(t.Context(), "audit", "--policy", strict, "--kubeconfig", c.Kubeconfig, "--namespace", "audit")
	t.Logf("promenroll audit:\n%s", out)
	if err == nil {
		t.Fatalf("audit exited 0 although a stored PrometheusRule breaks the stricter policy:\n%s", out)
	}
	for _, want := range []string{
		"Deployment audit/api: not enrolled: would add metadata.labels monitoring.promenroll.io/scrape=true (rule workloads), spec.template.metadata.labels monitoring.promenroll.io/scrape=true (rule workloads)",
		"PrometheusRule audit/terse: would be refused today (1 problem(s)):\n  spec.groups[0].rules[0].annotations[summary]: Required value: alert Terse needs annotation summary",
		"ServiceMonitor audit/hidden: loaded by no Prometheus, and the policy's monitors.labels do not change that",
		"audit: 1 workloads and Services scanned: 1 not fully enrolled, 0 with conflicting labels; monitors and rules: 1 loaded by no Prometheus, 0 without the policy's monitors.labels; 2 PrometheusRules and monitors checked, 1 would be refused",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit output lacks %q:\n%s\n%s", want, out, errOut)
		}
	}

	// -o json: check's schema, the same verdicts.
	js, _, err := c.Promenroll(t.Context(), "audit", "--policy", strict, "--kubeconfig", c.Kubeconfig, "-n", "audit", "-o", "json")
	if err == nil {
		t.Error("audit -o json exited 0 although a stored PrometheusRule would be refused")
	}
	var res struct {
		APIVersion string
		Objects    []struct {
			Kind, Namespace, Name string
			Denied                bool
			Labels                []struct{ Field, Key, Value string }
			Findings              []struct{ Level, Code, Field string }
		}
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatalf("audit -o json: %v\n%s", err, js)
	}
	found := 0
	for _, o := range res.Objects {
		switch o.Kind + " " + o.Name {
		case "PrometheusRule terse":
			if o.Denied && len(o.Findings) == 1 && o.Findings[0].Code == "require_alert_annotations" && o.Findings[0].Field == "spec.groups[0].rules[0].annotations[summary]" {
				found++
			}
		case "Deployment api":
			if len(o.Labels) == 2 && o.Labels[0].Key == "monitoring.promenroll.io/scrape" {
				found++
			}
		case "ServiceMonitor hidden":
			for _, f := range o.Findings {
				if f.Code == "unselected" {
					found++
				}
			}
		}
	}
	if res.APIVersion != "promenroll.io/check/v1" || found != 3 {
		t.Errorf("audit -o json lacks the rule's denial, the Deployment's labels or the unselected monitor:\n%s", js)
	}

	// A dry-run namespace's objects are reported as dry-run, and its rules
	// are not counted as refused.
	createNamespace(t, "audit-dry-run", nil, map[string]string{"promenroll.io/mode": "dry-run"})
	kubectl(t, deploymentYAML("audit-dry-run", ""), "apply", "-f", "-")
	kubectl(t, strings.Replace(`apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: terse, namespace: NS}
spec:
  groups:
  - name: terse
    rules:
    - {alert: Terse, expr: up == 0, labels: {severity: warning}}
`, "NS", "audit-dry-run", 1), "apply", "-f", "-")
	out, _, err = c.Promenroll(t.Context(), "audit", "--policy", strict, "--kubeconfig", c.Kubeconfig, "--namespace", "audit-dry-run")
	if err != nil {
		t.Errorf("audit of a dry-run namespace exited non-zero:\n%s", out)
	}
	if !strings.Contains(out, "PrometheusRule audit-dry-run/terse: loaded by no Prometheus; the policy's monitors.labels fix that: would add metadata.labels release=kube-prometheus-stack (rule monitors, dry-run)") {
		t.Errorf("a rule the dry-run namespace left unlabelled is not reported as fixable:\n%s", out)
	}
	if !strings.Contains(out, "PrometheusRule audit-dry-run/terse: breaks the policy (dry-run: admitted with warnings)") {
		t.Errorf("dry-run rule not reported as dry-run:\n%s", out)
	}
	if !strings.Contains(out, "Deployment audit-dry-run/api: not enrolled: would add metadata.labels monitoring.promenroll.io/scrape=true (rule workloads, dry-run)") {
		t.Errorf("dry-run namespace not reported as dry-run:\n%s", out)
	}
}
