// Package deploy checks the manifests in deploy/ and the Dockerfile against
// what the product spec promises, without a cluster (the e2e suite applies
// them to a real API server). kustomize runs through the kubectl that
// `make test-bins` builds.
package deploy

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/server"
	"github.com/promenroll/promenroll/internal/testdiff"
	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/cluster"
	"github.com/promenroll/promenroll/test/manifests"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// render runs `kubectl kustomize deploy/<overlay>`.
func render(t *testing.T, overlay string) *manifests.Install {
	t.Helper()
	r := root(t)
	kubectl := filepath.Join(r, "bin", "k8s", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("%s missing: run `make test-bins` (make test does)", kubectl)
	}
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(r, "deploy", overlay)).Output()
	if err != nil {
		t.Fatalf("kustomize deploy/%s: %v", overlay, err)
	}
	// existing-secret is a template: the user puts their CA in it.
	out = bytes.ReplaceAll(out, []byte("CA_BUNDLE"), []byte(base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n"))))
	in, err := manifests.Parse("deploy/"+overlay, out)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// Overlays is every install kustomize offers, with its TLS mode.
var Overlays = map[string]string{
	"base":            server.TLSSelfManaged,
	"dry-run":         server.TLSSelfManaged,
	"cert-manager":    server.TLSCertManager,
	"existing-secret": server.TLSExistingSecret,
}

func TestInstallsAreSafe(t *testing.T) {
	for overlay, mode := range Overlays {
		t.Run(overlay, func(t *testing.T) {
			for _, err := range manifests.Check(render(t, overlay), manifests.Expect{Namespace: cluster.Namespace, TLSMode: mode, Name: "promenroll"}) {
				t.Error(err)
			}
		})
	}
}

// TestCheckerCatchesUnsafeInstalls proves the shared checker fails on what
// it guards: each edit of the base render must be reported.
func TestCheckerCatchesUnsafeInstalls(t *testing.T) {
	for name, edit := range map[string]struct{ from, to, want string }{
		"rules fail open":          {"failurePolicy: Fail", "failurePolicy: Ignore", "failurePolicy Ignore, want Fail"},
		"long timeout":             {"timeoutSeconds: 5", "timeoutSeconds: 30", "timeoutSeconds 30"},
		"kube-system not excluded": {"values:\n      - kube-system", "values:\n      - kube-systemx", "does not exclude namespace kube-system"},
		"one replica":              {"replicas: 2", "replicas: 1", "replicas 1"},
		"writable root":            {"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "container securityContext is not restricted"},
		"unscoped secret access":   {"  resourceNames:\n  - promenroll-tls\n  resources:\n  - secrets", "  resources:\n  - secrets", "reads every Secret"},
		"cluster-wide write":       {"verbs:\n  - get\n  - list\n  - watch\n---", "verbs:\n  - get\n  - list\n  - watch\n  - delete\n---", "grants delete"},
		"rendered secret data":     {"kind: Secret\nmetadata:", "data: {tls.crt: YQ==}\nkind: Secret\nmetadata:", "rendered with data"},
	} {
		t.Run(name, func(t *testing.T) {
			r := root(t)
			out, err := exec.Command(filepath.Join(r, "bin", "k8s", "kubectl"), "kustomize", filepath.Join(r, "deploy", "base")).Output()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte(edit.from)) {
				t.Fatalf("the render no longer contains %q", edit.from)
			}
			in, err := manifests.Parse("edited", bytes.Replace(out, []byte(edit.from), []byte(edit.to), 1))
			if err != nil {
				t.Fatal(err)
			}
			var msgs []string
			for _, err := range manifests.Check(in, manifests.Expect{Namespace: cluster.Namespace, TLSMode: server.TLSSelfManaged, Name: "promenroll"}) {
				msgs = append(msgs, err.Error())
			}
			if !strings.Contains(strings.Join(msgs, "\n"), edit.want) {
				t.Errorf("not reported (%q); got:\n%s", edit.want, strings.Join(msgs, "\n"))
			}
		})
	}
}

func policyFrom(t *testing.T, in *manifests.Install) *policy.Policy {
	t.Helper()
	p, err := manifests.Policy(in, cluster.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestShippedPoliciesLoad(t *testing.T) {
	if m := policyFrom(t, render(t, "base")).Source.Mode; m != policy.ModeEnforce {
		t.Errorf("base mode %s", m)
	}
	if m := policyFrom(t, render(t, "dry-run")).Source.Mode; m != policy.ModeDryRun {
		t.Errorf("dry-run overlay mode %s", m)
	}
}

func TestOwnPrometheusRulePassesTheGate(t *testing.T) {
	in := render(t, "base")
	p := policyFrom(t, in)
	pr, size, err := manifests.OwnRule(in)
	if err != nil {
		t.Fatal(err)
	}
	rep := p.CheckPrometheusRule(pr, size, policy.Namespace{Name: "monitoring"})
	if len(rep.Findings) > 0 {
		t.Errorf("promenroll's own rules: %v", rep.Findings)
	}
	if pr.Labels["release"] != "kube-prometheus-stack" {
		t.Error("promenroll's PrometheusRule lacks the monitors label it asks of others")
	}
}

// TestDockerfile checks what `docker build` would need, since no Docker
// engine runs here: the Go version matches go.mod, every package the binary
// is built from is copied in, the build is static, and the image runs as
// non-root.
func TestDockerfile(t *testing.T) {
	r := root(t)
	df, err := os.ReadFile(filepath.Join(r, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(r, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	img := regexp.MustCompile(`(?m)^FROM golang:(\d+\.\d+)`).FindSubmatch(df)
	if goVer == nil || img == nil || string(goVer[1]) != string(img[1]) {
		t.Errorf("Dockerfile builds with golang:%s, go.mod says go %s", img, goVer)
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if eq .Module.Path \"github.com/promenroll/promenroll\"}}{{.Dir}}{{end}}{{end}}", "./cmd/promenroll")
	list.Dir = r
	out, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rel, _ := filepath.Rel(r, sc.Text())
		top := strings.Split(filepath.ToSlash(rel), "/")[0]
		if !regexp.MustCompile(`(?m)^COPY ` + regexp.QuoteMeta(top) + `/ `).Match(df) {
			t.Errorf("the binary is built from %s but the Dockerfile does not COPY %s/", rel, top)
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "./cmd/promenroll", "USER 65532:65532", `ENTRYPOINT ["/promenroll"]`} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

// TestShippedPolicyAdmitsWhatPrometheusLoads: the policy deploy/ ships
// refuses only what Prometheus or the operator would refuse. Every
// PrometheusRule of kube-prometheus (policy/testdata's copy of the corpus)
// and of the third-party
// shapes in policy/testdata/rules/third-party (a severity outside the
// convention, no severity at all: rules real projects ship) goes through
// the gate table as /validate runs it: none is denied, and the conventions
// they miss are warnings.
func TestShippedPolicyAdmitsWhatPrometheusLoads(t *testing.T) {
	r := root(t)
	var files []string
	for _, glob := range []string{
		// kube-prometheus' PrometheusRules, the corpus kept in the repository.
		filepath.Join(r, "policy", "testdata", "rules", "default", "kube-prometheus", "*.good.yaml"),
		filepath.Join(r, "policy", "testdata", "rules", "third-party", "*.good.yaml"),
	} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			t.Fatalf("no rule files at %s", glob)
		}
		files = append(files, m...)
	}
	for _, overlay := range []string{"base", "dry-run"} {
		p := policyFrom(t, render(t, overlay))
		warned := map[string]bool{}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			js, err := yaml.YAMLToJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			res, err := p.Gate(schema.GroupKind{Group: "monitoring.coreos.com", Kind: "PrometheusRule"}, js, policy.Namespace{Name: "monitoring"}, policy.ClusterState{})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if d := res.Report.Denials(); len(d) > 0 {
				t.Errorf("deploy/%s refuses %s, which Prometheus loads: %v", overlay, filepath.Base(f), d.ToAggregate())
			}
			for _, fd := range res.Report.Findings {
				if fd.Check == policy.CheckAlertLabels || fd.Check == policy.CheckSeverity {
					warned[filepath.Base(f)] = true
				}
			}
		}
		for _, f := range []string{"severity-major.good.yaml", "no-severity.good.yaml"} {
			if !warned[f] {
				t.Errorf("deploy/%s says nothing of %s's severity: the convention should warn", overlay, f)
			}
		}
	}
}

// TestWebhooksCoverEveryKindOfTheTables: serve is called for every kind
// of the policy's mutation table (/mutate) and gate table (/validate), in
// every install, so a new table entry without its webhook rule fails here.
func TestWebhooksCoverEveryKindOfTheTables(t *testing.T) {
	for overlay := range Overlays {
		in := render(t, overlay)
		mut, err := manifests.One[admissionregistrationv1.MutatingWebhookConfiguration](in, "MutatingWebhookConfiguration")
		if err != nil {
			t.Fatal(err)
		}
		val, err := manifests.One[admissionregistrationv1.ValidatingWebhookConfiguration](in, "ValidatingWebhookConfiguration")
		if err != nil {
			t.Fatal(err)
		}
		covered := func(rules []admissionregistrationv1.RuleWithOperations, gk schema.GroupKind) bool {
			resource := strings.ToLower(gk.Kind) + "s"
			return slices.ContainsFunc(rules, func(r admissionregistrationv1.RuleWithOperations) bool {
				return slices.Contains(r.APIGroups, gk.Group) && slices.Contains(r.Resources, resource) &&
					slices.Contains(r.Operations, admissionregistrationv1.Create) && slices.Contains(r.Operations, admissionregistrationv1.Update)
			})
		}
		var mutRules, valRules []admissionregistrationv1.RuleWithOperations
		for _, w := range mut.Webhooks {
			mutRules = append(mutRules, w.Rules...)
		}
		for _, w := range val.Webhooks {
			valRules = append(valRules, w.Rules...)
		}
		for _, gk := range policy.BuiltinMutatedKinds() {
			if !covered(mutRules, gk) {
				t.Errorf("deploy/%s: no mutating webhook rule for %s (CREATE and UPDATE)", overlay, gk)
			}
		}
		for _, gk := range policy.GatedKinds() {
			if !covered(valRules, gk) {
				t.Errorf("deploy/%s: no validating webhook rule for %s (CREATE and UPDATE)", overlay, gk)
			}
		}
	}
}

// TestSecretReferencesComponent: base plus components/secret-references
// (rendered from a copy, as a user's overlay would) passes --watch-secrets
// and grants list and watch on Secrets, never get; the safety checker
// accepts that only for this opt-in.
func TestSecretReferencesComponent(t *testing.T) {
	in, _ := renderWithComponent(t, "secret-references")
	want := manifests.Expect{Namespace: cluster.Namespace, TLSMode: server.TLSSelfManaged, Name: "promenroll", SecretNames: true}
	for _, err := range manifests.Check(in, want) {
		t.Error(err)
	}
	want.SecretNames = false
	if errs := manifests.Check(in, want); len(errs) < 2 {
		t.Errorf("the checker, not told of the opt-in, accepted it: %v", errs)
	}
}

var update = flag.Bool("update", false, "rewrite deploy/components/native-enrollment/native-enrollment.yaml")

// TestNativeEnrollmentIsCurrent: the native policies kustomize ships are
// what `promenroll compile` prints for deploy/base's policy (make native
// rewrites them), and base plus the component is a safe install whose
// mutating webhook no longer enrolls.
func TestNativeEnrollmentIsCurrent(t *testing.T) {
	r := root(t)
	p := policyFrom(t, render(t, "base"))
	want, err := p.NativeYAML(policy.NativeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(r, "deploy", "components", "native-enrollment", "native-enrollment.yaml")
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale for deploy/base's policy (generation %s): run make native", file, p.Generation)
	}
	in, out := renderWithComponent(t, "native-enrollment")
	for _, err := range manifests.Check(in, manifests.Expect{Namespace: cluster.Namespace, TLSMode: server.TLSSelfManaged, Name: "promenroll", NativeEnrollment: true}) {
		t.Error(err)
	}
	// The component's policy is base's with enrollment.engine native.
	withComponent := policyFrom(t, in)
	if withComponent.Engine() != policy.EngineNative || withComponent.EnrollmentGeneration != p.EnrollmentGeneration {
		t.Errorf("the component's policy: engine %s, enrollment generation %s; want native and base's %s", withComponent.Engine(), withComponent.EnrollmentGeneration, p.EnrollmentGeneration)
	}
	src := withComponent.Source
	src.Enrollment = p.Source.Enrollment
	if d := testdiff.Diff(p.Source, src); d != "" {
		t.Errorf("the component's policy differs from deploy/base's beyond the engine (-base +component):\n%s", d)
	}
	if n := bytes.Count(out, []byte("kind: MutatingAdmissionPolicy\n")); n != 3 {
		t.Errorf("%d MutatingAdmissionPolicies rendered, want 3", n)
	}
}

// renderWithComponent runs kustomize on a user's overlay of deploy/base
// plus deploy/components/<component>, from a copy of deploy/ (kustomize
// takes no absolute or outside paths).
func renderWithComponent(t *testing.T, component string) (*manifests.Install, []byte) {
	t.Helper()
	r := root(t)
	kubectl := filepath.Join(r, "bin", "k8s", "kubectl")
	if _, err := os.Stat(kubectl); err != nil {
		t.Fatalf("%s missing: run `make test-bins` (make test does)", kubectl)
	}
	dir := t.TempDir()
	if err := os.CopyFS(filepath.Join(dir, "deploy"), os.DirFS(filepath.Join(r, "deploy"))); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte("resources: [../deploy/base]\ncomponents: [../deploy/components/"+component+"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(kubectl, "kustomize", overlay).Output()
	if err != nil {
		t.Fatalf("kustomize: %v", err)
	}
	in, err := manifests.Parse("base + components/"+component, out)
	if err != nil {
		t.Fatal(err)
	}
	return in, out
}
