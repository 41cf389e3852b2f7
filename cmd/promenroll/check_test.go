package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckFailsOnARuleTheWebhookWouldDeny(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"check", "--policy", "../../examples/policy.yaml", "../../examples"}, &out, &errOut)
	if !errors.Is(err, errCheckFailed) || exitCode(err) != 1 {
		t.Fatalf("err = %v (exit %d), want a failed check", err, exitCode(err))
	}
	for _, want := range []string{
		"examples/prometheusrule-bad.yaml#1 PrometheusRule shop/checkout-broken: spec.groups[0].rules[0].expr: Invalid value: could not parse expression",
		"examples/prometheusrule-good.yaml#1 PrometheusRule shop/checkout: 2 rules valid",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCheckPassesKubePrometheusAndPrintsLintWarnings(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := filepath.Join("..", "..", "policy", "testdata", "rules", "default")
	err := run(t.Context(), []string{"check", "--policy", filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "kube-prometheus")}, &out, &errOut)
	if err != nil {
		t.Fatalf("kube-prometheus failed the check: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `warning: spec.groups[9].rules[13]: Duplicate value: "code_verb:apiserver_request_total:increase1h"`) {
		t.Errorf("duplicate-rule lint warning not printed:\n%s", out.String())
	}
	if got := strings.Count(out.String(), "rules valid"); got != 8 {
		t.Errorf("%d PrometheusRules reported valid, want 8", got)
	}
}

func TestCheckRefusesAnInvalidPolicy(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"check", "--policy", "../../policy/testdata/rules/default/kube-prometheus/grafana.good.yaml", "../../examples"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "grafana.good.yaml:4: metadata: unknown field") || exitCode(err) != 2 {
		t.Fatalf("err = %v (exit %d), want the policy error and exit 2", err, exitCode(err))
	}
}

func TestCheckReadsMultiDocumentFilesByYAMLDocuments(t *testing.T) {
	dir := t.TempDir()
	manifest := `apiVersion: v1
kind: ConfigMap
metadata: {name: notes}
data:
  text: |
    a block scalar whose line starts with dashes:
    ---not a document separator
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: second, namespace: shop}
spec:
  groups:
  - name: g
    rules:
    - alert: Broken
      expr: up ==
      labels: {severity: warning}
`
	path := filepath.Join(dir, "all.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	err := run(t.Context(), []string{"check", "--policy", "../../examples/policy.yaml", path}, &out, &errOut)
	if !errors.Is(err, errCheckFailed) {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), path+"#2 PrometheusRule shop/second: spec.groups[0].rules[0].expr") {
		t.Errorf("the rule is not reported as document 2:\n%s", out.String())
	}
}

func TestCheckRunsTheMonitorGate(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := filepath.Join("..", "..", "policy", "testdata", "monitors")
	err := run(t.Context(), []string{"check", "--policy", "../../examples/policy.yaml", filepath.Join(dir, "sm-invalid-regex.bad.yaml"), filepath.Join(dir, "kube-prometheus")}, &out, &errOut)
	if !errors.Is(err, errCheckFailed) {
		t.Fatalf("err = %v, want a failed check\n%s", err, out.String())
	}
	if want := `sm-invalid-regex.bad.yaml#1 ServiceMonitor shop/invalid-regex: spec.endpoints[0].relabelings[0].regex: Invalid value: "([a-z": not a valid RE2 regular expression`; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	if got := strings.Count(out.String(), "endpoints valid"); got != 13 {
		t.Errorf("%d kube-prometheus ServiceMonitors reported valid, want 13:\n%s", got, out.String())
	}
}

// TestCheckJudgesMonitorsAgainstTheServicesInTheInput: kube-prometheus'
// ServiceMonitors with the Services and the Prometheus object it ships all
// pass, their ports name ports of their Services, and only the control-plane
// monitors, whose Services the cluster creates, are warned about.
func TestCheckJudgesMonitorsAgainstTheServicesInTheInput(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := filepath.Join("..", "..", "policy", "testdata", "monitors", "kube-prometheus")
	if err := run(t.Context(), []string{"check", "--policy", "../../examples/policy.yaml", dir}, &out, &errOut); err != nil {
		t.Fatalf("kube-prometheus' monitors failed the check: %v\n%s", err, out.String())
	}
	if got := strings.Count(out.String(), "endpoints valid"); got != 13 {
		t.Errorf("%d ServiceMonitors valid, want 13:\n%s", got, out.String())
	}
	if strings.Contains(out.String(), "names no port") {
		t.Errorf("a kube-prometheus port was reported missing:\n%s", out.String())
	}
	if got := strings.Count(out.String(), "matches no Service in namespace"); got != 5 {
		t.Errorf("%d monitors warned to match no Service, want the 5 control-plane ones (apiserver, coredns, kube-controller-manager, kube-scheduler, kubelet):\n%s", got, out.String())
	}
}

func TestCheckJudgesPodMonitorsAgainstTheWorkloadsInTheInput(t *testing.T) {
	dir := t.TempDir()
	manifests := `apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: registry.example/api:1
        ports: [{name: http, containerPort: 8080}]
---
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: api, namespace: shop}
spec:
  selector: {matchLabels: {app: api}}
  podMetricsEndpoints: [{port: metrics}]
`
	path := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(path, []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"check", "--policy", "../../examples/policy.yaml", path}, &out, &errOut); err != nil {
		t.Fatalf("a warning failed the check: %v\n%s", err, out.String())
	}
	want := `PodMonitor shop/api: warning: spec.podMetricsEndpoints[0].port: Invalid value: "metrics": names no container port of the selected pod templates (Deployment api: http (8080))`
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
}

// TestCheckJudgesMonitorsAgainstTheServicesAsEnrolled: a ServiceMonitor
// that selects the label enrollment adds is judged against the Service as
// the webhooks will store it, in either document order: it is selected,
// and the warning is the one kubectl prints, that its port names no port
// of that Service.
func TestCheckJudgesMonitorsAgainstTheServicesAsEnrolled(t *testing.T) {
	service := `apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {app.kubernetes.io/name: web}}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
`
	monitor := `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {monitoring.promenroll.io/scrape: "true"}}
  endpoints: [{port: http-metrics}]
`
	for name, input := range map[string]string{
		"the Service first":        shopNamespace + "---\n" + service + "---\n" + monitor,
		"the ServiceMonitor first": shopNamespace + "---\n" + monitor + "---\n" + service,
	} {
		t.Run(name, func(t *testing.T) {
			out, _, code := checkRun(t, input, "--policy", examplePolicy, "-")
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
			if strings.Contains(out, "matches no Service") {
				t.Errorf("the ServiceMonitor was judged against the Service before enrollment:\n%s", out)
			}
			want := `ServiceMonitor shop/web: warning: spec.endpoints[0].port: Invalid value: "http-metrics": names no port of the selected Services (Service web: http): this endpoint yields no target; use one of those names`
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		})
	}
}

// TestCheckCoercesBeforeTheCRDSchema: the API server validates a custom
// resource against its CRD after the mutating webhooks, so a rule label
// written as a boolean is coerced, not refused, and check says the same.
func TestCheckCoercesBeforeTheCRDSchema(t *testing.T) {
	rule := `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: typo, namespace: shop}
spec:
  groups:
  - name: typo
    rules:
    - alert: Typo
      expr: up == 0
      labels: {severity: warning, page: true}
`
	out, _, code := checkRun(t, shopNamespace+"---\n"+rule, "--policy", examplePolicy, "-")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	want := `PrometheusRule shop/typo: warning: spec.groups[0].rules[0].labels[page] was true, not a string; promenroll set it to "true"`
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// TestCheckJudgesAlertmanagerConfigsAgainstTheInput: check runs the
// AlertmanagerConfig gate (the operator's validation: a denial fails the
// check), judges selection by the Alertmanager objects in its input, and
// the referenced Secrets by the input's Secrets (names only) when it has
// some.
func TestCheckJudgesAlertmanagerConfigsAgainstTheInput(t *testing.T) {
	const am = `apiVersion: monitoring.coreos.com/v1
kind: Alertmanager
metadata: {name: main, namespace: monitoring}
spec:
  alertmanagerConfigSelector: {matchLabels: {alertmanagerConfig: main}}
  alertmanagerConfigNamespaceSelector: {}
`
	const amc = `apiVersion: monitoring.coreos.com/v1alpha1
kind: AlertmanagerConfig
metadata: {name: shop, namespace: shop}
spec:
  route: {receiver: slack}
  receivers:
  - name: slack
    slackConfigs:
    - apiURL: {name: slack, key: url}
`
	const unrelatedDoc = "apiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: shop}\ntype: Opaque\n"
	out, _, code := checkRun(t, am+"---\n"+amc+"---\n"+unrelatedDoc, "--policy", examplePolicy, "-")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		`AlertmanagerConfig shop/shop: warning: no Alertmanager will load this AlertmanagerConfig: Alertmanager monitoring/main selects AlertmanagerConfigs with alertmanagerConfig=main`,
		`AlertmanagerConfig shop/shop: warning: spec.receivers[0].slackConfigs[0].apiURL.name: Invalid value: "slack": no Secret slack in namespace shop`,
		"AlertmanagerConfig shop/shop: 1 receivers valid",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = checkRun(t, amc, "--policy", examplePolicy, "-")
	if strings.Contains(out, "no Secret") || strings.Contains(out, "no Alertmanager") {
		t.Errorf("without Secrets or Alertmanagers in the input, they were judged:\n%s", out)
	}
	bad := strings.Replace(amc, "route: {receiver: slack}", "route: {receiver: pager}", 1)
	out, _, code = checkRun(t, bad, "--policy", examplePolicy, "-")
	if code != 1 || !strings.Contains(out, `spec.route: Invalid value: receiver "pager" not found`) {
		t.Errorf("exit %d, want 1 with the route's denial:\n%s", code, out)
	}
}
