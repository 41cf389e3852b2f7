package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/clusterstate"
	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/internal/testdiff"
	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/webhook"
)

const examplePolicy = "../../examples/policy.yaml"

// checkRun runs `promenroll check` with stdin and returns stdout, stderr
// and the exit code.
func checkRun(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	out, errOut, err := cliRun(t, stdin, append([]string{"check"}, args...)...)
	return out, errOut, exitCode(err)
}

// cliRun runs promenroll with args and stdin, and returns stdout, stderr
// and the command's error.
func cliRun(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand(&out, &errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const shopNamespace = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {monitoring: enabled, team: payments}
`

const webDeployment = `# the web front end
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}   # kept
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example/web:1
        ports: [{name: metrics, containerPort: 9090}]
`

const ruleWithoutExpr = `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: noexpr, namespace: shop}
spec:
  groups:
  - name: g
    rules:
    - alert: NoExpr
      labels: {severity: warning}
`

func TestCheckExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "good.yaml", shopNamespace+"---\n"+webDeployment)
	bad := write(t, dir, "bad.yaml", `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: broken, namespace: shop}
spec:
  groups:
  - name: g
    rules:
    - {alert: Broken, expr: "up ==", labels: {severity: warning}}
`)
	unparseable := write(t, dir, "mixed.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkey: [unclosed\n---\n"+ruleWithoutExpr)
	for name, tc := range map[string]struct {
		args []string
		want int
	}{
		"nothing denied":                    {[]string{"--policy", examplePolicy, good}, 0},
		"a rule the webhook would deny":     {[]string{"--policy", examplePolicy, good, bad}, 1},
		"no --policy":                       {[]string{good}, 2},
		"an unknown flag":                   {[]string{"--policy", examplePolicy, "--frobnicate", good}, 2},
		"an unknown output":                 {[]string{"--policy", examplePolicy, "-o", "xml", good}, 2},
		"a missing file":                    {[]string{"--policy", examplePolicy, filepath.Join(dir, "nope.yaml")}, 2},
		"an invalid policy":                 {[]string{"--policy", good, good}, 2},
		"an unparseable document wins over": {[]string{"--policy", examplePolicy, bad, unparseable}, 2},
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut, code := checkRun(t, "", tc.args...)
			if code != tc.want {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.want, out, errOut)
			}
		})
	}
}

// TestCheckContinuesPastAnUnparseableDocument: the bad document is named
// by file and document number; the documents after it are still checked.
func TestCheckContinuesPastAnUnparseableDocument(t *testing.T) {
	dir := t.TempDir()
	path := write(t, dir, "mixed.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkey: [unclosed\n---\n"+ruleWithoutExpr)
	out, _, code := checkRun(t, "", "--policy", examplePolicy, path)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{path + "#2: error: not YAML", path + "#3 PrometheusRule shop/noexpr: spec.groups[0].rules[0].expr: Required value"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestCheckSchemaRefusesWhatTheAPIServerRefuses: the CRD's schema runs
// before the gates, as in the API server: a rule without expr, an unknown
// field, a wrong type, an invalid name.
func TestCheckSchemaRefusesWhatTheAPIServerRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ doc, want string }{
		"a rule without expr": {ruleWithoutExpr, "spec.groups[0].rules[0].expr: Required value"},
		"an unknown field": {`apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  endpoints: [{port: metrics, intervall: 30s}]
`, "spec.endpoints[0].intervall: Unsupported value: unknown field"},
		"a wrong type": {`apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  podMetricsEndpoints: {port: metrics}
`, "spec.podMetricsEndpoints: Invalid value: \"object\": spec.podMetricsEndpoints in body must be of type array"},
		"an invalid name": {`apiVersion: apps/v1
kind: Deployment
metadata: {name: Web_1, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web}]}
`, "metadata.name: Invalid value: \"Web_1\""},
		"an unknown field of a built-in kind": {`apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}], selektor: {app: web}}
`, `unknown field "spec.selektor"`},
		"an API version the CRD does not serve": {`apiVersion: monitoring.coreos.com/v2
kind: ServiceMonitor
metadata: {name: web, namespace: shop}
spec: {}
`, "apiVersion: Unsupported value: \"monitoring.coreos.com/v2\""},
	} {
		t.Run(name, func(t *testing.T) {
			out, _, code := checkRun(t, tc.doc, "--policy", examplePolicy, "-")
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, want 1 with %q:\n%s", code, tc.want, out)
			}
			if !strings.Contains(out, "stdin#1 ") {
				t.Errorf("not reported as stdin#1:\n%s", out)
			}
		})
	}
}

// TestCheckPreviewsEnrollment: folders (recursively), namespaces from the
// input or --namespace-labels, --namespace for objects without one.
func TestCheckPreviewsEnrollment(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "ns/shop.yaml", shopNamespace)
	write(t, dir, "apps/web/deployment.yml", webDeployment)
	write(t, dir, "apps/web/README.md", "not a manifest")
	out, _, code := checkRun(t, "", "--policy", examplePolicy, dir)
	want := "Deployment shop/web: would add metadata.labels monitoring.promenroll.io/scrape=true, metadata.labels team=payments, spec.template.metadata.labels monitoring.promenroll.io/scrape=true"
	if code != 0 || !strings.Contains(out, want) {
		t.Errorf("exit %d; output lacks %q:\n%s", code, want, out)
	}
	// The namespace from --namespace-labels, the object without one in
	// --namespace.
	noNS := strings.Replace(webDeployment, "  namespace: shop\n", "", 1)
	out, _, _ = checkRun(t, noNS, "--policy", examplePolicy, "--namespace", "shop", "--namespace-labels", "shop=monitoring=enabled,shop=team=search", "-")
	if want := "Deployment shop/web: would add metadata.labels monitoring.promenroll.io/scrape=true, metadata.labels team=search"; !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	// A namespace the policy's namespaceSelector does not select: nothing.
	out, _, _ = checkRun(t, webDeployment, "--policy", examplePolicy, "-")
	if strings.Contains(out, "would add") {
		t.Errorf("labels added in a namespace without monitoring=enabled:\n%s", out)
	}
}

func TestCheckReadsLists(t *testing.T) {
	list := `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, labels: {monitoring: enabled, team: payments}}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: shop, labels: {app.kubernetes.io/name: web}}
  spec: {ports: [{name: metrics, port: 9090}]}
- apiVersion: monitoring.coreos.com/v1
  kind: PrometheusRule
  metadata: {name: broken, namespace: shop}
  spec: {groups: [{name: g, rules: [{alert: A, expr: "up ==", labels: {severity: warning}}]}]}
`
	out, _, code := checkRun(t, list, "--policy", examplePolicy, "-")
	for _, want := range []string{
		"stdin#1[2] Service shop/web: would add metadata.labels monitoring.promenroll.io/scrape=true, metadata.labels team=payments",
		"stdin#1[3] PrometheusRule shop/broken: spec.groups[0].rules[0].expr: Invalid value",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}

// TestCheckJSON: the documented schema, with stable codes, field paths and
// the source line of each field.
func TestCheckJSON(t *testing.T) {
	dir := t.TempDir()
	path := write(t, dir, "app.yaml", shopNamespace+"---\n"+webDeployment+"---\n"+`apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: broken, namespace: shop}
spec:
  groups:
  - name: g
    rules:
    - alert: Broken
      expr: up ==
      labels: {severity: page}
`)
	out, _, code := checkRun(t, "", "--policy", examplePolicy, "-o", "json", path)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var res Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if res.APIVersion != "promenroll.io/check/v1" || res.Summary != (Summary{Objects: 3, Denied: 1, Labelled: 2}) {
		t.Errorf("apiVersion %q, summary %+v", res.APIVersion, res.Summary)
	}
	dep := res.Objects[1]
	if dep.Kind != "Deployment" || dep.Document != 2 || dep.Line != 8 || len(dep.Labels) != 3 ||
		dep.Labels[2] != (Change{Field: "spec.template.metadata.labels", Key: "monitoring.promenroll.io/scrape", Value: "true"}) {
		t.Errorf("Deployment report %+v", dep)
	}
	rule := res.Objects[2]
	var got []Finding
	for _, f := range rule.Findings {
		got = append(got, Finding{Level: f.Level, Code: f.Code, Field: f.Field, Line: f.Line})
	}
	want := []Finding{
		{Level: "deny", Code: "promql", Field: "spec.groups[0].rules[0].expr", Line: 32},
		{Level: "deny", Code: "severity_values", Field: "spec.groups[0].rules[0].labels[severity]", Line: 33},
	}
	if d := testdiff.Diff(want, got); d != "" || !rule.Denied {
		t.Errorf("rule findings (-want +got):\n%s", d)
	}
}

func TestCheckGitHubAnnotations(t *testing.T) {
	dir := t.TempDir()
	path := write(t, dir, "rules.yaml", ruleWithoutExpr)
	out, _, code := checkRun(t, "", "--policy", examplePolicy, "-o", "github", path)
	want := "::error file=" + ghProperty(path) + ",line=8,title=promenroll schema::PrometheusRule shop/noexpr: spec.groups[0].rules[0].expr: Required value"
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("exit %d; output lacks %q:\n%s", code, want, out)
	}
}

// TestCheckYAMLAppliesTheMutationsOnly: -o yaml is the input with the
// webhook's changes, in input order, comments kept; run again on its own
// output it changes nothing.
func TestCheckYAMLAppliesTheMutationsOnly(t *testing.T) {
	dir := t.TempDir()
	path := write(t, dir, "app.yaml", shopNamespace+"---\n"+webDeployment)
	out, _, code := checkRun(t, "", "--policy", examplePolicy, "-o", "yaml", path)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"# the web front end", "# kept", "team: payments", "monitoring.promenroll.io/scrape: \"true\""} {
		if !strings.Contains(out, want) {
			t.Errorf("-o yaml lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(out, shopNamespace+"---\n") {
		t.Errorf("an unchanged document was rewritten:\n%s", out)
	}
	var before, after map[string]any
	docs := strings.Split(out, "\n---\n")
	if err := yaml.Unmarshal([]byte(webDeployment), &before); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &after); err != nil {
		t.Fatal(err)
	}
	labels := after["metadata"].(map[string]any)["labels"].(map[string]any)
	delete(labels, "team")
	delete(labels, "monitoring.promenroll.io/scrape")
	delete(after["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any), "monitoring.promenroll.io/scrape")
	if d := testdiff.Diff(before, after); d != "" {
		t.Errorf("-o yaml changed more than the labels (-input +output):\n%s", d)
	}
	again, _, _ := checkRun(t, out, "--policy", examplePolicy, "-o", "yaml", "-")
	if again != out {
		t.Errorf("check -o yaml on its own output changed it:\n%s", testdiff.Diff(out, again))
	}
}

// TestCheckModeEnforce: a namespace relaxed to dry-run passes as is and
// fails when judged as if enforced.
func TestCheckModeEnforce(t *testing.T) {
	rule := `apiVersion: v1
kind: Namespace
metadata:
  name: sandbox
  labels: {monitoring: enabled}
  annotations: {promenroll.io/mode: dry-run}
---
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: loose, namespace: sandbox}
spec:
  groups: [{name: g, rules: [{alert: A, expr: up == 0, labels: {severity: page}}]}]
`
	out, _, code := checkRun(t, rule, "--policy", examplePolicy, "-")
	if code != 0 || !strings.Contains(out, "would be denied in enforce mode: spec.groups[0].rules[0].labels[severity]") {
		t.Errorf("dry-run namespace: exit %d\n%s", code, out)
	}
	out, _, code = checkRun(t, rule, "--policy", examplePolicy, "--mode", "enforce", "-")
	if code != 1 {
		t.Errorf("--mode enforce: exit %d, want 1\n%s", code, out)
	}
}

// TestCheckAndServeAgree: the same objects through the webhook's HTTP
// handler and through check get the same labels.
func TestCheckAndServeAgree(t *testing.T) {
	p, err := policy.Load(examplePolicy, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	shop := policy.Namespace{Name: "shop", Labels: map[string]string{"monitoring": "enabled", "team": "payments", "kubernetes.io/metadata.name": "shop"}}
	mux := http.NewServeMux()
	mux.Handle(webhook.MutatePath, webhook.Endpoint("mutate", &webhook.Mutator{
		Policies:   policystore.Static(p),
		Namespaces: clusterstate.NamespaceGetterFunc(func(_ context.Context, _ string) (policy.Namespace, error) { return shop, nil }),
		Metrics:    webhook.NewMetrics(nil),
	}, nil))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	fixtures := map[string]string{
		"Deployment":     webDeployment,
		"Service":        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop, labels: {app.kubernetes.io/name: web}}\nspec: {ports: [{name: metrics, port: 9090}]}\n",
		"ServiceMonitor": "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: web, namespace: shop}\nspec: {selector: {matchLabels: {app: web}}, endpoints: [{port: metrics}]}\n",
		"PrometheusRule": "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: web, namespace: shop}\nspec: {groups: [{name: g, rules: [{record: 'job:up:sum', expr: sum by (job) (up)}]}]}\n",
	}
	for kind, doc := range fixtures {
		t.Run(kind, func(t *testing.T) {
			out, _, _ := checkRun(t, shopNamespace+"---\n"+doc, "--policy", examplePolicy, "-o", "json", "-")
			var res Result
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatal(err)
			}
			fromCheck := res.Objects[1].Labels

			js, _ := yaml.YAMLToJSON([]byte(doc))
			var head struct {
				APIVersion string `json:"apiVersion"`
			}
			_ = json.Unmarshal(js, &head)
			group, version, _ := strings.Cut(head.APIVersion, "/")
			if version == "" {
				group, version = "", group
			}
			review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
				Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Group: group, Version: version, Kind: kind},
					Namespace: "shop", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: js}}}
			body, _ := json.Marshal(review)
			resp, err := http.Post(srv.URL+webhook.MutatePath, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var answer admissionv1.AdmissionReview
			if err := json.Unmarshal(raw, &answer); err != nil {
				t.Fatal(err)
			}
			var ops []struct {
				Path  string `json:"path"`
				Value any    `json:"value"`
			}
			_ = json.Unmarshal(answer.Response.Patch, &ops)
			var fromServe []Change
			for _, op := range ops {
				fromServe = append(fromServe, labelChanges(op.Path, op.Value)...)
			}
			if len(fromServe) == 0 {
				t.Fatalf("the fixture gets no label from the webhook: %s", raw)
			}
			if d := testdiff.Diff(fromServe, fromCheck); d != "" {
				t.Errorf("serve and check differ (-serve +check):\n%s", d)
			}
			if !slices.Equal(answer.Response.Warnings, warningsOf(res.Objects[1])) {
				t.Errorf("warnings: serve %q, check %q", answer.Response.Warnings, warningsOf(res.Objects[1]))
			}
		})
	}
}

func warningsOf(o ObjectReport) []string {
	var out []string
	for _, f := range o.Findings {
		if f.Code == "admission-warning" {
			out = append(out, f.Message)
		}
	}
	return out
}
