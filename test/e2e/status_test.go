package e2e

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

// statusInterval is the reporter's interval in these tests; every change
// must show within two of them (plus Prometheus' own discovery and scrape,
// 2s each here, and the operator's rule reload).
const statusInterval = 2 * time.Second

// statusProm is the test's Prometheus, as results name it.
const statusProm = cluster.MonitoringNamespace + "/" + cluster.PrometheusName

// reportResult is one result of an OpenReports Report, as stored.
type reportResult struct {
	Kind, Name, Rule, Result, Message string
	Properties                        map[string]string
}

// reportResults reads the Report promenroll writes in ns (nil when none).
func reportResults(t *testing.T, ns string) ([]reportResult, error) {
	t.Helper()
	var u unstructured.Unstructured
	u.SetGroupVersionKind(schema.GroupVersionKind{Group: "openreports.io", Version: "v1alpha1", Kind: "Report"})
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "promenroll"}, &u); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	items, _, _ := unstructured.NestedSlice(u.Object, "results")
	var out []reportResult
	for _, it := range items {
		m := it.(map[string]any)
		res := reportResult{Rule: fmt.Sprint(m["rule"]), Result: fmt.Sprint(m["result"]), Message: fmt.Sprint(m["message"]), Properties: map[string]string{}}
		if subs, ok := m["resources"].([]any); ok && len(subs) == 1 {
			s := subs[0].(map[string]any)
			res.Kind, res.Name = fmt.Sprint(s["kind"]), fmt.Sprint(s["name"])
		}
		props, _ := m["properties"].(map[string]any)
		for k, v := range props {
			res.Properties[k] = fmt.Sprint(v)
		}
		out = append(out, res)
	}
	return out, nil
}

// waitResult waits until ns's Report holds a result for kind/name whose
// outcome is want and whose message contains every part.
func waitResult(t *testing.T, ns, kind, name, want string, parts ...string) reportResult {
	t.Helper()
	var last []reportResult
	var found reportResult
	err := testwait.Until(t.Context(), settle, func() (bool, error) {
		rs, err := reportResults(t, ns)
		last = rs
		for _, r := range rs {
			if r.Kind != kind || r.Name != name || r.Result != want {
				continue
			}
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(r.Message, p)
			}
			if ok {
				found = r
				return true, nil
			}
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("no %s result for %s %s/%s containing %q within %s; the Report holds %+v: %v", want, kind, ns, name, parts, settle, last, err)
	}
	return found
}

func TestTheStatusSaysWhatPrometheusReallyDid(t *testing.T) {
	m := monitoringStack(t)
	ns := "status-e2e"
	createNamespace(t, ns, nil, nil)

	// The reporter starts before the OpenReports CRD is served: metrics
	// and Events only, and Reports once it is, without a restart.
	rep, err := c.StartReporter(t.Context(), m, statusInterval)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.LogTails(30))
	}
	t.Cleanup(func() { rep.Stop() })

	kubectl(t, workload(ns, "checkout", nil, nil, "metrics:9090"), "apply", "-f", "-")
	kubectl(t, workload(ns, "broken", nil, map[string]string{cluster.MetricsStatusAnnotation: "500"}, "metrics:9090"), "apply", "-f", "-")
	kubectl(t, workload(ns, "nometrics", nil, nil, "web:8080"), "apply", "-f", "-")
	kubectl(t, fmt.Sprintf(`apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: orphan, namespace: %s, labels: {release: other}}
spec:
  selector: {matchLabels: {app: checkout}}
  endpoints: [{port: metrics}]
`, ns), "apply", "-f", "-")
	rules := fmt.Sprintf(`apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: %%s, namespace: %s}
spec:
  groups:
  - name: %%s
    rules:
    - record: %%s
      expr: %%s
`, ns)
	kubectl(t, fmt.Sprintf(rules, "good", "status.good", "status:up:sum", "sum(up)"), "apply", "-f", "-")
	kubectl(t, fmt.Sprintf(rules, "clash", "status.clash", "status:clash", `'{__name__=~"up|scrape_samples_scraped"} + 0'`), "apply", "-f", "-")

	err = testwait.Until(t.Context(), settle, func() (bool, error) {
		v, err := rep.Metric("promenroll_status_results", `namespace="status-e2e"`, `check="scraped"`, `result="pass"`)
		return v >= 1, err
	})
	if err != nil {
		t.Fatalf("the status metrics never counted checkout as scraped (no CRD yet: metrics only): %v\n%s", err, c.LogTails(30))
	}
	if rs, err := reportResults(t, ns); err == nil && rs != nil {
		t.Fatalf("a Report was written before its CRD was served: %+v", rs)
	}

	kubectl(t, "", "apply", "-k", filepath.Join(c.Root, "deploy", "components", "openreports"))
	applied := time.Now()

	t.Run("an enrolled Deployment whose /metrics works is scraped, targets up", func(t *testing.T) {
		r := waitResult(t, ns, "Deployment", "checkout", "pass", "1 targets up in Prometheus "+statusProm)
		t.Logf("measured: OpenReports CRD installed to the first Report: %s", time.Since(applied).Round(100*time.Millisecond))
		if r.Rule != "scraped" || r.Properties["pool"] != podPool || !strings.HasSuffix(r.Properties["url"], ":9090/metrics") {
			t.Errorf("result %+v: want rule scraped, pool %s and the target's URL", r, podPool)
		}
	})
	t.Run("one whose /metrics answers 500 is down, with Prometheus' error", func(t *testing.T) {
		r := waitResult(t, ns, "Deployment", "broken", "fail", "1 of 1 targets down", "500")
		if !strings.Contains(r.Properties["lastError"], "500") {
			t.Errorf("lastError %q: want Prometheus' error naming the 500", r.Properties["lastError"])
		}
	})
	t.Run("one with no metrics port is not scraped, and says why", func(t *testing.T) {
		waitResult(t, ns, "Deployment", "nometrics", "fail", "no port is named metrics or http-metrics (declared: web)")
	})
	t.Run("a ServiceMonitor no Prometheus loads says the difference", func(t *testing.T) {
		waitResult(t, ns, "ServiceMonitor", "orphan", "fail", "loaded by no Prometheus", "release=kube-prometheus-stack", "release=other")
	})
	t.Run("a rule that fails at every evaluation is reported with Prometheus' lastError", func(t *testing.T) {
		waitResult(t, ns, "PrometheusRule", "clash", "fail", "status.clash/status:clash in "+statusProm, "vector cannot contain metrics with the same labelset")
	})
	t.Run("an admitted good rule is loaded", func(t *testing.T) {
		waitResult(t, ns, "PrometheusRule", "good", "pass", "loaded by "+statusProm+": 1 rules, all evaluating")
	})
	t.Run("an Event on the Deployment says it is scraped", func(t *testing.T) {
		var evs eventsv1.EventList
		err := testwait.Until(t.Context(), settle, func() (bool, error) {
			err := c.Client.List(t.Context(), &evs, client.InNamespace(ns))
			for _, e := range evs.Items {
				if e.Regarding.Kind == "Deployment" && e.Regarding.Name == "checkout" && e.Reason == "Scraped" && e.Type == "Normal" &&
					strings.Contains(e.Note, "targets up in Prometheus "+statusProm) && e.ReportingController == "promenroll" {
					return true, nil
				}
			}
			return false, err
		})
		if err != nil {
			t.Errorf("no Scraped Event on deployment/checkout: %v; events: %+v", err, evs.Items)
		}
	})

	t.Run("promenroll status follows the chain for one object", func(t *testing.T) {
		args := []string{"status", "--kubeconfig", c.Kubeconfig, "--policy", policyFile, "--prometheus-url", statusProm + "=" + m.PrometheusURL}
		out, errOut, err := c.Promenroll(t.Context(), append(args, "deployment/checkout", "-n", ns)...)
		if err != nil {
			t.Fatalf("status deployment/checkout: %v\n%s%s", err, out, errOut)
		}
		for _, want := range []string{"Deployment status-e2e/checkout", "policy:     enrolled by rule", "monitors:   PodMonitor promenroll-system/promenroll-workloads",
			"prometheus: " + statusProm, "targets:    up", ":9090/metrics", "result:     pass: 1 targets up in Prometheus " + statusProm} {
			if !strings.Contains(out, want) {
				t.Errorf("status deployment/checkout does not say %q:\n%s", want, out)
			}
		}
		t.Logf("promenroll status deployment/checkout -n %s:\n%s", ns, out)
		out, _, err = c.Promenroll(t.Context(), append(args, "deploy/broken", "-n", ns, "-o", "json")...)
		if code := exitCode(err); code != 1 {
			t.Errorf("status deploy/broken exited %d, want 1 (a target is down): %v", code, err)
		}
		if !strings.Contains(out, `"result": "fail"`) || !strings.Contains(out, `"health": "down"`) || !strings.Contains(out, "500") {
			t.Errorf("status deploy/broken -o json:\n%s", out)
		}
		out, _, err = c.Promenroll(t.Context(), append(args, "prometheusrule/clash", "-n", ns)...)
		if exitCode(err) != 1 || !strings.Contains(out, "vector cannot contain metrics with the same labelset") {
			t.Errorf("status prometheusrule/clash (%v):\n%s", err, out)
		}
		out, errOut, err = c.Promenroll(t.Context(), "audit", "--kubeconfig", c.Kubeconfig, "--policy", policyFile, "-n", ns, "--with-prometheus", "--prometheus-url", statusProm+"="+m.PrometheusURL)
		for _, want := range []string{"Deployment status-e2e/broken: status fail: 1 of 1 targets down", "PrometheusRule status-e2e/clash: status fail:", "ServiceMonitor status-e2e/orphan: status fail: loaded by no Prometheus",
			"audit --with-prometheus: 6 results: 2 pass, 0 warn, 4 fail, 0 error, 0 skip"} {
			if !strings.Contains(out, want) {
				t.Errorf("audit --with-prometheus (%v) does not say %q:\n%s%s", err, want, out, errOut)
			}
		}
	})

	t.Run("each result changes when its cause is fixed", func(t *testing.T) {
		fixed := time.Now()
		kubectl(t, workload(ns, "broken", nil, nil, "metrics:9090"), "apply", "-f", "-")
		kubectl(t, workload(ns, "nometrics", nil, nil, "metrics:8080"), "apply", "-f", "-")
		kubectl(t, "", "label", "-n", ns, "servicemonitor/orphan", "release=kube-prometheus-stack", "--overwrite")
		kubectl(t, fmt.Sprintf(rules, "clash", "status.clash", "status:clash", "sum(up)"), "apply", "-f", "-")
		waitResult(t, ns, "Deployment", "broken", "pass", "targets up")
		waitResult(t, ns, "Deployment", "nometrics", "pass", "targets up")
		waitResult(t, ns, "ServiceMonitor", "orphan", "warn", "loaded by "+statusProm+", but yields no target")
		waitResult(t, ns, "PrometheusRule", "clash", "pass", "all evaluating")
		t.Logf("measured: causes fixed to every result passing: %s (interval %s)", time.Since(fixed).Round(100*time.Millisecond), statusInterval)
	})

	t.Run("Prometheus stopped: results become error, admission is unaffected, and they recover", func(t *testing.T) {
		m.StopPrometheus()
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				_ = m.StartPrometheus(t.Context())
			}
		})
		waitResult(t, ns, "Deployment", "checkout", "error", "did not answer", statusProm)
		if done, how := rep.Exited(); done {
			t.Fatalf("the reporter exited: %s", how)
		}
		// Admission still works and still enrolls.
		kubectl(t, workload(ns, "during-outage", nil, nil, "metrics:9090"), "apply", "-f", "-")
		out, _ := kubectl(t, "", "get", "deployment", "-n", ns, "during-outage", "-o", "jsonpath={.spec.template.metadata.labels}")
		if !strings.Contains(out, "monitoring.promenroll.io/scrape") {
			t.Errorf("a Deployment created while Prometheus was down was not enrolled: %s", out)
		}
		if err := m.StartPrometheus(t.Context()); err != nil {
			t.Fatal(err)
		}
		restarted = true
		waitResult(t, ns, "Deployment", "checkout", "pass", "targets up")
		waitResult(t, ns, "Deployment", "during-outage", "pass", "targets up")
	})
}

// exitCode is a command's exit code from its error (0 for nil, -1 when it
// did not run to an exit).
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}

func TestTheStatusResumesAfterTheAPIServerComesBack(t *testing.T) {
	m := monitoringStack(t)
	ns := "status-apiserver"
	createNamespace(t, ns, nil, nil)
	proxy, err := c.NewAPIProxy("status-apiserver")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	// This reporter reaches the API server only through the proxy; the
	// CRD is served by now or soon (the other status test installs it).
	kubectl(t, "", "apply", "-k", filepath.Join(c.Root, "deploy", "components", "openreports"))
	rep, err := c.StartReporter(t.Context(), m, statusInterval, "--kubeconfig", proxy.Kubeconfig)
	if err != nil {
		t.Fatalf("%v\n%s", err, c.LogTails(30))
	}
	t.Cleanup(func() { rep.Stop() })
	kubectl(t, workload(ns, "before", nil, nil, "metrics:9090"), "apply", "-f", "-")
	waitResult(t, ns, "Deployment", "before", "pass", "targets up")

	// Away for two intervals, inside the leader election's renew deadline
	// (10s; a longer outage makes the leader stop and restart, as every
	// controller-runtime leader does). Cycles go on from the caches;
	// watches end. Meanwhile a workload appears (the test's own client
	// does not go through the proxy).
	proxy.Cut()
	kubectl(t, workload(ns, "during", nil, nil, "metrics:9090"), "apply", "-f", "-")
	time.Sleep(2 * statusInterval)
	if done, how := rep.Exited(); done {
		t.Fatalf("the reporter exited while the API server was away: %s", how)
	}
	back := time.Now()
	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	waitResult(t, ns, "Deployment", "during", "pass", "targets up")
	t.Logf("measured: API server back to the new workload reported: %s (interval %s)", time.Since(back).Round(100*time.Millisecond), statusInterval)
	if done, how := rep.Exited(); done {
		t.Errorf("the reporter exited: %s", how)
	}
}
