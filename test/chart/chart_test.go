package chart

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/cluster"
	"github.com/promenroll/promenroll/test/manifests"
)

const namespace = cluster.Namespace

// kubeVersion is the local control plane's (test/tools pins it); the
// chart's kubeVersion constraint is checked against it.
var kubeVersion = &common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

func TestMain(m *testing.M) {
	// Helm logs every file it follows through a link (files/ links to
	// deploy/base/monitors) at INFO: keep test output for failures.
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	os.Exit(m.Run())
}

func chartDir(t *testing.T) string {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "charts", "promenroll")
}

// ciValues lists charts/promenroll/ci/*-values.yaml with their TLS mode.
func ciValues(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("ci values files: %v %v", files, err)
	}
	out := map[string]map[string]any{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		vals := map[string]any{}
		if err := yaml.Unmarshal(data, &vals); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = vals
	}
	return out
}

func loadChart(t *testing.T) *chartv2.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// render is `helm template` through the SDK: a client-only install, with
// the values schema enforced.
func render(t *testing.T, vals map[string]any) (string, error) {
	t.Helper()
	install := action.NewInstall(&action.Configuration{})
	install.DryRunStrategy = action.DryRunClient
	install.KubeVersion = kubeVersion
	install.ReleaseName = "promenroll"
	install.Namespace = namespace
	install.Replace = true
	rel, err := install.Run(loadChart(t), vals)
	if err != nil {
		return "", err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("release of type %T", rel)
	}
	return r.Manifest, nil
}

func mustRender(t *testing.T, vals map[string]any) *manifests.Install {
	t.Helper()
	out, err := render(t, vals)
	if err != nil {
		t.Fatal(err)
	}
	in, err := manifests.Parse("chart", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func tlsMode(vals map[string]any) string {
	if tls, ok := vals["tls"].(map[string]any); ok {
		if m, ok := tls["mode"].(string); ok {
			return m
		}
	}
	return "selfManaged"
}

// nativeEnrollment: the values choose the native engine, or turn the
// enrollment webhook off.
func nativeEnrollment(vals map[string]any) bool {
	pol, _ := vals["policy"].(map[string]any)
	enr, _ := pol["enrollment"].(map[string]any)
	if enr["engine"] == "native" {
		return true
	}
	wh, _ := vals["webhook"].(map[string]any)
	en, _ := wh["enroll"].(map[string]any)
	on, set := en["enabled"].(bool)
	return set && !on
}

// secretNames: the values opt in to the AlertmanagerConfig gate's Secret
// warnings.
func secretNames(vals map[string]any) bool {
	wh, _ := vals["webhook"].(map[string]any)
	am, _ := wh["alertmanagerConfigs"].(map[string]any)
	on, _ := am["secretReferences"].(bool)
	return on
}

func fullname(vals map[string]any) string {
	if n, ok := vals["fullnameOverride"].(string); ok && n != "" {
		return n
	}
	return "promenroll"
}

// TestLintStrict is `helm lint --strict` with each ci values file: the
// schema, the templates and the chart's metadata, warnings included.
func TestLintStrict(t *testing.T) {
	for name, vals := range ciValues(t) {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = namespace
			lint.KubeVersion = kubeVersion
			res := lint.Run([]string{chartDir(t)}, vals)
			for _, m := range res.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("%s", m)
				}
			}
			for _, err := range res.Errors {
				t.Error(err)
			}
		})
	}
}

// TestRendersAreSafe: every ci values file renders, and the render passes
// the checker the kustomize install passes.
func TestRendersAreSafe(t *testing.T) {
	for name, vals := range ciValues(t) {
		t.Run(name, func(t *testing.T) {
			in := mustRender(t, vals)
			in.Source = "chart with ci/" + name
			for _, err := range manifests.Check(in, manifests.Expect{Namespace: namespace, TLSMode: tlsMode(vals), Name: fullname(vals), SecretNames: secretNames(vals), NativeEnrollment: nativeEnrollment(vals)}) {
				t.Error(err)
			}
			p, err := manifests.Policy(in, namespace)
			if err != nil {
				t.Fatal(err)
			}
			if _, dry := vals["dryRun"]; dry && p.Source.Mode != policy.ModeDryRun {
				t.Errorf("dryRun: true renders policy mode %s", p.Source.Mode)
			}
		})
	}
}

func kustomize(t *testing.T, overlay string) *manifests.Install {
	t.Helper()
	root, _ := cluster.RepoRoot()
	out, err := exec.Command(filepath.Join(root, "bin", "k8s", "kubectl"), "kustomize", filepath.Join(root, "deploy", overlay)).Output()
	if err != nil {
		t.Fatalf("kustomize deploy/%s (run make test-bins): %v", overlay, err)
	}
	in, err := manifests.Parse("deploy/"+overlay, out)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// TestChartAndKustomizeAgree: with default values the chart installs what
// deploy/base installs, field for field where it matters to safety
// (webhooks, RBAC, how the pod runs), and ships the same policy and the same
// monitoring objects; likewise for cert-manager and dry-run.
func TestChartAndKustomizeAgree(t *testing.T) {
	for overlay, vals := range map[string]map[string]any{
		"base":         {},
		"cert-manager": {"tls": map[string]any{"mode": "certManager"}},
		"dry-run":      {"dryRun": true},
	} {
		t.Run(overlay, func(t *testing.T) {
			chart, kust := mustRender(t, vals), kustomize(t, overlay)
			a, err := manifests.Safety(chart)
			if err != nil {
				t.Fatal(err)
			}
			b, err := manifests.Safety(kust)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(b, a); d != "" {
				t.Errorf("safety-relevant fields differ (-kustomize +chart):\n%s", d)
			}
			pc, err := manifests.Policy(chart, namespace)
			if err != nil {
				t.Fatal(err)
			}
			pk, err := manifests.Policy(kust, namespace)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(pk.Source, pc.Source); d != "" {
				t.Errorf("policies differ (-kustomize +chart):\n%s", d)
			}
			for _, kind := range []string{"PodMonitor", "ServiceMonitor", "PrometheusRule"} {
				if d := cmp.Diff(specs(t, kust, kind), specs(t, chart, kind)); d != "" {
					t.Errorf("%s specs differ (-kustomize +chart):\n%s", kind, d)
				}
				for _, l := range labelsOf(t, chart, kind) {
					if l["release"] != "kube-prometheus-stack" {
						t.Errorf("chart %s without release=kube-prometheus-stack: %v", kind, l)
					}
				}
			}
		})
	}
}

func specs(t *testing.T, in *manifests.Install, kind string) []string {
	t.Helper()
	var out []string
	for _, doc := range in.ByKind[kind] {
		var o struct {
			Spec map[string]any `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatal(err)
		}
		// The chart adds its instance label to its own ServiceMonitor's
		// selector; compare what is shared.
		if sel, ok := o.Spec["selector"].(map[string]any); ok {
			if ml, ok := sel["matchLabels"].(map[string]any); ok {
				delete(ml, "app.kubernetes.io/instance")
			}
		}
		b, _ := yaml.Marshal(o.Spec)
		out = append(out, string(b))
	}
	slices.Sort(out)
	return out
}

func labelsOf(t *testing.T, in *manifests.Install, kind string) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, doc := range in.ByKind[kind] {
		var o struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Metadata.Labels)
	}
	return out
}

// TestInvalidValuesNameTheKey: the schema refuses bad values with the key
// in the message, before anything is rendered.
func TestInvalidValuesNameTheKey(t *testing.T) {
	for name, tc := range map[string]struct {
		vals map[string]any
		want string
	}{
		"unknown key":         {map[string]any{"replica": 3}, "replica"},
		"failurePolicy typo":  {map[string]any{"webhook": map[string]any{"rules": map[string]any{"failurePolicy": "fail", "timeoutSeconds": 5}}}, "failurePolicy"},
		"timeout too long":    {map[string]any{"webhook": map[string]any{"enroll": map[string]any{"failurePolicy": "Ignore", "timeoutSeconds": 6}}}, "timeoutSeconds"},
		"unknown TLS mode":    {map[string]any{"tls": map[string]any{"mode": "manual"}}, "mode"},
		"existingSecret bare": {map[string]any{"tls": map[string]any{"mode": "existingSecret"}}, "existingSecret"},
		"bad duration":        {map[string]any{"tls": map[string]any{"mode": "selfManaged", "selfManaged": map[string]any{"certValidity": "1 year"}}}, "certValidity"},
		"bad log level":       {map[string]any{"logLevel": "verbose"}, "logLevel"},
		"bad policy mode":     {map[string]any{"policy": map[string]any{"apiVersion": "promenroll.io/v1alpha1", "kind": "Policy", "mode": "enforcing"}}, "mode"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := render(t, tc.vals)
			if err == nil {
				t.Fatal("rendered")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %q: %v", tc.want, err)
			}
		})
	}
}

// TestNotesTellTheReleaseLabel: NOTES.txt tells the user to set the
// release label of their kube-prometheus-stack.
func TestNotesTellTheReleaseLabel(t *testing.T) {
	install := action.NewInstall(&action.Configuration{})
	install.DryRunStrategy = action.DryRunClient
	install.KubeVersion = kubeVersion
	install.ReleaseName, install.Namespace, install.Replace = "promenroll", namespace, true
	rel, err := install.Run(loadChart(t), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	notes := rel.(*releasev1.Release).Info.Notes
	for _, want := range []string{"release=kube-prometheus-stack", "--set prometheusRelease=", "helm uninstall"} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
}

// TestTemplatesKeepNothingRandom: two renders are byte-identical, so Argo
// CD and Flux see no diff between syncs.
func TestTemplatesKeepNothingRandom(t *testing.T) {
	for name, vals := range ciValues(t) {
		a, err := render(t, vals)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := render(t, vals)
		if !bytes.Equal([]byte(a), []byte(b)) {
			t.Errorf("%s: two renders differ", name)
		}
	}
	// Nor could they differ in a cluster: no generated secrets, no reads
	// of live state, no clock.
	action := regexp.MustCompile(`\{\{[^}]*\b(genCA|genSelfSignedCert|genSignedCert|genPrivateKey|randAlphaNum|randAlpha|randNumeric|randBytes|uuidv4|lookup|now)\b[^}]*\}\}`)
	for _, tpl := range loadChart(t).Templates {
		if m := action.Find(tpl.Data); m != nil {
			t.Errorf("%s: %s: renders would differ between syncs", tpl.Name, m)
		}
	}
}

// TestDeclaredKindsGetTheirWebhookRuleAndRBAC: a pod owner declared in
// policy.kinds (the Argo Rollout of docs/policy.md) is enrolled by the
// policy the chart renders, gets a rule of the enrolling webhook (CREATE
// and UPDATE) and the ClusterRole's read for `promenroll audit`, from the
// same value, so nothing has to be kept in step by hand.
func TestDeclaredKindsGetTheirWebhookRuleAndRBAC(t *testing.T) {
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(`
policy:
  apiVersion: promenroll.io/v1alpha1
  kind: Policy
  kinds:
  - {apiVersion: argoproj.io/v1alpha1, kind: Rollout, resource: rollouts, podTemplate: spec.template}
  enroll:
  - name: workloads
    kinds: [Deployment, Rollout]
    labels: {monitoring.promenroll.io/scrape: "true"}
    podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
`), &vals); err != nil {
		t.Fatal(err)
	}
	in := mustRender(t, vals)
	p, err := manifests.Policy(in, namespace)
	if err != nil {
		t.Fatal(err)
	}
	rollout := schema.GroupKind{Group: "argoproj.io", Kind: "Rollout"}
	if !p.Mutated(rollout) {
		t.Fatalf("the rendered policy does not enroll %s: %v", rollout, p.MutatedKinds())
	}
	mut, err := manifests.One[admissionregistrationv1.MutatingWebhookConfiguration](in, "MutatingWebhookConfiguration")
	if err != nil {
		t.Fatal(err)
	}
	want := admissionregistrationv1.RuleWithOperations{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{"argoproj.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"rollouts"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
	}
	for _, w := range mut.Webhooks {
		if w.Name == "enroll.promenroll.io" && !slices.ContainsFunc(w.Rules, func(r admissionregistrationv1.RuleWithOperations) bool { return cmp.Equal(r, want) }) {
			t.Errorf("enroll.promenroll.io has no rule %+v: %+v", want, w.Rules)
		}
	}
	roles, err := manifests.All[rbacv1.ClusterRole](in, "ClusterRole")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(roles, func(role rbacv1.ClusterRole) bool {
		return role.Name == "promenroll" && slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Equal(r.APIGroups, []string{"argoproj.io"}) && slices.Equal(r.Resources, []string{"rollouts"}) && slices.Contains(r.Verbs, "list")
		})
	}) {
		t.Errorf("the promenroll ClusterRole cannot list rollouts.argoproj.io: %+v", roles)
	}
}

// TestNameOverrideAndCommonLabels: nameOverride renames every object and
// the app.kubernetes.io/name label (selectors included), commonLabels are
// on every object, and the install is as safe as the default one.
func TestNameOverrideAndCommonLabels(t *testing.T) {
	vals := map[string]any{"nameOverride": "enroller", "commonLabels": map[string]any{"team": "platform", "cost-center": "obs"}}
	in := mustRender(t, vals)
	in.Source = "chart with nameOverride and commonLabels"
	for _, err := range manifests.Check(in, manifests.Expect{Namespace: namespace, TLSMode: "selfManaged", Name: "promenroll-enroller"}) {
		t.Error(err)
	}
	n := 0
	for kind, docs := range in.ByKind {
		for _, doc := range docs {
			var o struct {
				Metadata struct {
					Name   string            `json:"name"`
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &o); err != nil {
				t.Fatal(err)
			}
			n++
			if o.Metadata.Labels["team"] != "platform" || o.Metadata.Labels["cost-center"] != "obs" {
				t.Errorf("%s %s lacks commonLabels: %v", kind, o.Metadata.Name, o.Metadata.Labels)
			}
			if o.Metadata.Labels["app.kubernetes.io/name"] != "enroller" {
				t.Errorf("%s %s: app.kubernetes.io/name %q, want enroller", kind, o.Metadata.Name, o.Metadata.Labels["app.kubernetes.io/name"])
			}
		}
	}
	if n < 10 {
		t.Fatalf("%d objects rendered", n)
	}
	if got := len(in.ByKind["Deployment"]); got != 1 {
		t.Fatalf("%d Deployments", got)
	}
	var d struct {
		Metadata struct{ Name string } `json:"metadata"`
		Spec     struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(in.ByKind["Deployment"][0], &d); err != nil {
		t.Fatal(err)
	}
	if d.Metadata.Name != "promenroll-enroller" || d.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "enroller" {
		t.Errorf("Deployment %s selects %v; want promenroll-enroller selecting app.kubernetes.io/name=enroller", d.Metadata.Name, d.Spec.Selector.MatchLabels)
	}
	if _, ok := d.Spec.Selector.MatchLabels["team"]; ok {
		t.Error("commonLabels leaked into the Deployment's selector: changing them later would be refused (the selector is immutable)")
	}
}

// TestCertManagerModeSignsWithItsOwnCA: without an issuerRef the chart
// creates what values.yaml says: a self-signed Issuer, a CA Certificate it
// signs, an Issuer of that CA, and the serving Certificate from it, whose
// Secret the cainjector reads the CA from.
func TestCertManagerModeSignsWithItsOwnCA(t *testing.T) {
	in := mustRender(t, map[string]any{"tls": map[string]any{"mode": "certManager"}})
	type cert struct {
		Metadata struct{ Name string } `json:"metadata"`
		Spec     struct {
			SecretName string                      `json:"secretName"`
			IsCA       bool                        `json:"isCA"`
			IssuerRef  struct{ Kind, Name string } `json:"issuerRef"`
		} `json:"spec"`
	}
	certs := map[string]cert{}
	for _, doc := range in.ByKind["Certificate"] {
		var c cert
		if err := yaml.Unmarshal(doc, &c); err != nil {
			t.Fatal(err)
		}
		certs[c.Metadata.Name] = c
	}
	issuers := map[string]map[string]any{}
	for _, doc := range in.ByKind["Issuer"] {
		var i struct {
			Metadata struct{ Name string } `json:"metadata"`
			Spec     map[string]any        `json:"spec"`
		}
		if err := yaml.Unmarshal(doc, &i); err != nil {
			t.Fatal(err)
		}
		issuers[i.Metadata.Name] = i.Spec
	}
	ca, serving := certs["promenroll-ca"], certs["promenroll"]
	if !ca.Spec.IsCA || ca.Spec.IssuerRef.Name != "promenroll-selfsigned" || issuers["promenroll-selfsigned"]["selfSigned"] == nil {
		t.Errorf("CA Certificate %+v, Issuers %v: want an isCA Certificate from the self-signed Issuer", ca, issuers)
	}
	if caIssuer, _ := issuers["promenroll-ca"]["ca"].(map[string]any); caIssuer["secretName"] != ca.Spec.SecretName {
		t.Errorf("Issuer promenroll-ca %v does not sign with the CA's Secret %q", issuers["promenroll-ca"], ca.Spec.SecretName)
	}
	if serving.Spec.IsCA || serving.Spec.IssuerRef.Name != "promenroll-ca" || serving.Spec.SecretName != "promenroll-tls" {
		t.Errorf("serving Certificate %+v: want promenroll-tls issued by promenroll-ca", serving)
	}
	withIssuer := mustRender(t, map[string]any{"tls": map[string]any{"mode": "certManager", "certManager": map[string]any{"issuerRef": map[string]any{"kind": "ClusterIssuer", "name": "corp-ca"}}}})
	if len(withIssuer.ByKind["Issuer"]) != 0 || len(withIssuer.ByKind["Certificate"]) != 1 {
		t.Errorf("with an issuerRef: %d Issuers and %d Certificates rendered, want 0 and 1", len(withIssuer.ByKind["Issuer"]), len(withIssuer.ByKind["Certificate"]))
	}
}
