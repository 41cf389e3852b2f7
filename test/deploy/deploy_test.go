// Package deploy checks the manifests in deploy/ and the Dockerfile against
// what the product spec promises, without a cluster (the e2e suite applies
// them to a real API server). kustomize runs through the kubectl that
// `make test-bins` builds.
package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/cluster"
)

func root(t *testing.T) string {
	t.Helper()
	r, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// render runs `kubectl kustomize deploy/<overlay>` and returns the objects
// by kind.
func render(t *testing.T, overlay string) map[string][][]byte {
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
	objs := map[string][][]byte{}
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		objs[meta.Kind] = append(objs[meta.Kind], doc)
	}
	return objs
}

func one[T any](t *testing.T, objs map[string][][]byte, kind string) *T {
	t.Helper()
	if len(objs[kind]) != 1 {
		t.Fatalf("%d %s objects, want 1", len(objs[kind]), kind)
	}
	var v T
	if err := yaml.UnmarshalStrict(objs[kind][0], &v); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
	return &v
}

var excluded = []string{"kube-system", "kube-public", "kube-node-lease", cluster.Namespace}

func TestWebhookConfigurations(t *testing.T) {
	objs := render(t, "cert-manager")
	mut := one[admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration")
	val := one[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration")
	check := func(name string, fp *admissionregistrationv1.FailurePolicyType, want admissionregistrationv1.FailurePolicyType,
		timeout *int32, se *admissionregistrationv1.SideEffectClass, nsSel []string, path string, wantPath string) {
		if fp == nil || *fp != want {
			t.Errorf("%s: failurePolicy %v, want %s", name, fp, want)
		}
		if timeout == nil || *timeout > 5 {
			t.Errorf("%s: timeoutSeconds %v, want <= 5", name, timeout)
		}
		if se == nil || *se != admissionregistrationv1.SideEffectClassNone {
			t.Errorf("%s: sideEffects %v, want None (required for server-side dry-run)", name, se)
		}
		for _, ns := range excluded {
			if !slices.Contains(nsSel, ns) {
				t.Errorf("%s: namespaceSelector does not exclude %s", name, ns)
			}
		}
		if path != wantPath {
			t.Errorf("%s: path %s, want %s", name, path, wantPath)
		}
	}
	for _, w := range mut.Webhooks {
		check(w.Name, w.FailurePolicy, admissionregistrationv1.Ignore, w.TimeoutSeconds, w.SideEffects, excludedValues(w.NamespaceSelector.MatchExpressions), *w.ClientConfig.Service.Path, "/mutate")
		if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
			t.Errorf("%s: reinvocationPolicy %v, want IfNeeded", w.Name, w.ReinvocationPolicy)
		}
	}
	if w := mut.Webhooks[0]; w.ObjectSelector == nil || !slices.Contains(excludedValues(w.ObjectSelector.MatchExpressions), "false") {
		t.Errorf("%s: objectSelector does not honour %s=false", w.Name, policy.OptOutLabel)
	}
	if len(val.Webhooks) != 2 {
		t.Fatalf("%d validating webhooks, want 2 (rules, monitors)", len(val.Webhooks))
	}
	for _, w := range val.Webhooks {
		var resources []string
		for _, r := range w.Rules {
			resources = append(resources, r.Resources...)
		}
		switch w.Name {
		case "rules.promenroll.io":
			check(w.Name, w.FailurePolicy, admissionregistrationv1.Fail, w.TimeoutSeconds, w.SideEffects, excludedValues(w.NamespaceSelector.MatchExpressions), *w.ClientConfig.Service.Path, "/validate")
			if !slices.Equal(resources, []string{"prometheusrules"}) {
				t.Errorf("%s: fails closed for more than PrometheusRules: %v", w.Name, resources)
			}
		case "monitors.promenroll.io":
			check(w.Name, w.FailurePolicy, admissionregistrationv1.Ignore, w.TimeoutSeconds, w.SideEffects, excludedValues(w.NamespaceSelector.MatchExpressions), *w.ClientConfig.Service.Path, "/validate")
			if !slices.Equal(resources, []string{"servicemonitors", "podmonitors", "probes", "scrapeconfigs"}) {
				t.Errorf("%s: resources %v", w.Name, resources)
			}
		default:
			t.Errorf("unexpected validating webhook %s", w.Name)
		}
	}
	for _, a := range []map[string]string{mut.Annotations, val.Annotations} {
		if a["cert-manager.io/inject-ca-from"] != cluster.Namespace+"/promenroll" {
			t.Errorf("inject-ca-from = %q", a["cert-manager.io/inject-ca-from"])
		}
	}
}

func excludedValues(exprs []metav1.LabelSelectorRequirement) []string {
	var out []string
	for _, e := range exprs {
		if e.Operator == "NotIn" {
			out = append(out, e.Values...)
		}
	}
	return out
}

func TestDeploymentIsHighlyAvailableAndRestricted(t *testing.T) {
	objs := render(t, "cert-manager")
	d := one[appsv1.Deployment](t, objs, "Deployment")
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread constraints")
	}
	pdb := one[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget")
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() < 1 {
		t.Errorf("PDB minAvailable %v", pdb.Spec.MinAvailable)
	}
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext is not restricted: %+v", pod.SecurityContext)
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext is not restricted: %+v", sc)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes do not use /readyz and /healthz")
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		if m.SubPath != "" {
			t.Errorf("mount %s uses subPath: it would never see ConfigMap/Secret updates", m.Name)
		}
		mounts[m.Name] = m
	}
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, "--policy="+mounts["policy"].MountPath+"/policy.yaml") || !strings.Contains(args, "--cert-dir="+mounts["tls"].MountPath) {
		t.Errorf("args %q do not match the mounts %+v", args, mounts)
	}
	cert := objs["Certificate"]
	if len(cert) != 1 || !strings.Contains(string(cert[0]), "secretName: promenroll-tls") || !strings.Contains(string(cert[0]), "promenroll.promenroll-system.svc") {
		t.Errorf("Certificate does not issue promenroll-tls for the Service: %s", cert)
	}
	for _, v := range pod.Volumes {
		if v.Name == "tls" && v.Secret.SecretName != "promenroll-tls" {
			t.Errorf("tls volume uses secret %s", v.Secret.SecretName)
		}
	}
	// GOMEMLIMIT follows the container's memory limit, so the GC tightens
	// before the kernel OOM-kills.
	memLimit := false
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" &&
			(e.ValueFrom.ResourceFieldRef.Divisor.IsZero() || e.ValueFrom.ResourceFieldRef.Divisor.Value() == 1) {
			memLimit = true
		}
	}
	if !memLimit || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("GOMEMLIMIT must come from limits.memory in bytes, with a memory limit set: env %+v, limits %v", c.Env, c.Resources.Limits)
	}
}

func TestRBACIsReadOnly(t *testing.T) {
	role := one[rbacv1.ClusterRole](t, render(t, "base"), "ClusterRole")
	for _, r := range role.Rules {
		for _, v := range r.Verbs {
			if v != "get" && v != "list" && v != "watch" {
				t.Errorf("ClusterRole grants %s on %v", v, r.Resources)
			}
		}
	}
}

func policyFrom(t *testing.T, objs map[string][][]byte) *policy.Policy {
	t.Helper()
	cm := one[corev1.ConfigMap](t, objs, "ConfigMap")
	p, err := policy.Parse("policy.yaml", []byte(cm.Data["policy.yaml"]), policy.Options{OwnNamespace: cluster.Namespace})
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
	objs := render(t, "base")
	p := policyFrom(t, objs)
	pr := one[monv1.PrometheusRule](t, objs, "PrometheusRule")
	raw, _ := yaml.YAMLToJSON(objs["PrometheusRule"][0])
	rep := p.CheckPrometheusRule(pr, len(raw), policy.Namespace{Name: "monitoring"})
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
