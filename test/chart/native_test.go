package chart

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/manifests"
)

var update = flag.Bool("update", false, "rewrite charts/promenroll/files/native-enrollment.yaml")

// nativeValues are ci/native-values.yaml.
func nativeValues(t *testing.T) map[string]any {
	t.Helper()
	vals, ok := ciValues(t)["native-values.yaml"]
	if !ok {
		t.Fatal("ci/native-values.yaml missing")
	}
	return vals
}

// renderedPolicy is the policy ConfigMap's policy.yaml of a render.
func renderedPolicy(t *testing.T, in *manifests.Install) []byte {
	t.Helper()
	cms, err := manifests.All[corev1.ConfigMap](in, "ConfigMap")
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms {
		if doc, ok := cm.Data["policy.yaml"]; ok {
			return []byte(doc)
		}
	}
	t.Fatal("no policy ConfigMap rendered")
	return nil
}

// compileForChart is `promenroll compile --chart` of a policy document.
func compileForChart(t *testing.T, doc []byte) []byte {
	t.Helper()
	p, err := policy.Parse("policy.yaml", doc, policy.Options{OwnNamespace: policy.ChartNamespaceToken})
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.NativeYAML(policy.NativeOptions{Name: policy.ChartNameToken})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNativePoliciesAreCurrent: the native policies the chart ships are
// `promenroll compile --chart` of the policy it renders by default (make
// native rewrites them); with policy.enrollment.engine native (which is
// not part of the enrollment generation) they are rendered, named after
// the release, exclude its namespace, and replace the enrollment webhook.
func TestNativePoliciesAreCurrent(t *testing.T) {
	want := compileForChart(t, renderedPolicy(t, mustRender(t, nil)))
	file := filepath.Join(chartDir(t), "files", "native-enrollment.yaml")
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vals := nativeValues(t)
	in := mustRender(t, vals)
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale for the chart's default policy: run make native", file)
	}
	mps, err := manifests.All[admissionregistrationv1.MutatingAdmissionPolicy](in, "MutatingAdmissionPolicy")
	if err != nil {
		t.Fatal(err)
	}
	bindings, err := manifests.All[admissionregistrationv1.MutatingAdmissionPolicyBinding](in, "MutatingAdmissionPolicyBinding")
	if err != nil {
		t.Fatal(err)
	}
	if len(mps) != 3 || len(bindings) != 3 {
		t.Fatalf("%d MutatingAdmissionPolicies and %d bindings rendered, want 3 and 3", len(mps), len(bindings))
	}
	for i, mp := range mps {
		if !strings.HasPrefix(mp.Name, fullname(vals)+"-enroll-") || bindings[i].Spec.PolicyName != mp.Name {
			t.Errorf("policy %q, binding of %q: want both named after the release", mp.Name, bindings[i].Spec.PolicyName)
		}
		excluded := mp.Spec.MatchConstraints.NamespaceSelector.MatchExpressions[0]
		if excluded.Key != "kubernetes.io/metadata.name" || !slices.Contains(excluded.Values, namespace) || slices.Contains(excluded.Values, policy.ChartNamespaceToken) {
			t.Errorf("%s excludes %v, want the release's namespace %s among them", mp.Name, excluded.Values, namespace)
		}
	}
	if bytes.Contains(in.ByKind["MutatingWebhookConfiguration"][0], []byte("enroll.promenroll.io")) {
		t.Error("engine native still renders the enrollment webhook")
	}
	if n := len(in.ByKind["ValidatingAdmissionPolicy"]); n < 3 || len(in.ByKind["ValidatingAdmissionPolicyBinding"]) != n {
		t.Errorf("%d warnings policies and %d bindings rendered, want at least one per mutating policy, each bound", n, len(in.ByKind["ValidatingAdmissionPolicyBinding"]))
	}
	vals["webhook"] = map[string]any{"enroll": map[string]any{"nativeWarnings": false}}
	quiet := mustRender(t, vals)
	if len(quiet.ByKind["ValidatingAdmissionPolicy"])+len(quiet.ByKind["ValidatingAdmissionPolicyBinding"]) != 0 || len(quiet.ByKind["MutatingAdmissionPolicy"]) != 3 {
		t.Errorf("nativeWarnings false: %d warnings policies, %d mutating ones; want none and 3", len(quiet.ByKind["ValidatingAdmissionPolicy"]), len(quiet.ByKind["MutatingAdmissionPolicy"]))
	}
	for _, err := range manifests.Check(quiet, manifests.Expect{Namespace: namespace, TLSMode: "selfManaged", Name: fullname(vals), NativeEnrollment: true}) {
		t.Error(err)
	}
	if len(mustRender(t, nil).ByKind["MutatingAdmissionPolicy"]) != 0 {
		t.Error("the default engine (webhook) renders native policies")
	}
}

// TestNativePoliciesOfAnotherPolicy: a policy changed in values fails the
// render until its compile is passed as webhook.enroll.nativePolicies; a
// change outside what native policies are compiled from (monitors, rules,
// prometheusRelease) needs none; a compile of another policy is refused.
func TestNativePoliciesOfAnotherPolicy(t *testing.T) {
	withPolicy := func(extra map[string]any) map[string]any {
		vals := map[string]any{}
		data, _ := yaml.Marshal(nativeValues(t))
		if err := yaml.Unmarshal(data, &vals); err != nil {
			t.Fatal(err)
		}
		for k, v := range extra {
			vals[k] = v
		}
		return vals
	}
	teamRule := map[string]any{"policy": map[string]any{"enrollment": map[string]any{"engine": "native"}, "enroll": []any{
		map[string]any{"name": "team", "kinds": []any{"Deployment"}, "labels": map[string]any{"team": "{namespaceLabel:team}"}, "podTemplateLabels": map[string]any{"team": "{namespaceLabel:team}"}},
	}}}
	if _, err := render(t, withPolicy(map[string]any{"prometheusRelease": "monitoring", "policy": map[string]any{"enrollment": map[string]any{"engine": "native"}, "monitors": map[string]any{"labels": map[string]any{"team": "a"}}}})); err != nil {
		t.Errorf("a change to monitors and prometheusRelease needs no new compile, got: %v", err)
	}
	_, err := render(t, withPolicy(teamRule))
	if err == nil || !strings.Contains(err.Error(), "not from this release's") || !strings.Contains(err.Error(), "--set-file webhook.enroll.nativePolicies=native.yaml") {
		t.Fatalf("a new enroll rule with the shipped native policies: %v", err)
	}
	vals := withPolicy(teamRule)
	compiled := compileForChart(t, renderedPolicy(t, mustRender(t, withPolicy(map[string]any{"policy": map[string]any{"enrollment": map[string]any{"engine": "webhook"}, "enroll": teamRule["policy"].(map[string]any)["enroll"]}}))))
	vals["webhook"] = map[string]any{"enroll": map[string]any{"nativePolicies": string(compiled)}}
	in := mustRender(t, vals)
	mps := in.ByKind["MutatingAdmissionPolicy"]
	if len(mps) != 1 || !bytes.Contains(mps[0], []byte("team")) {
		t.Errorf("the compile of the team policy rendered %d policies:\n%s", len(mps), bytes.Join(mps, []byte("---\n")))
	}
	vals = withPolicy(map[string]any{"dryRun": true})
	vals["webhook"] = map[string]any{"enroll": map[string]any{"nativePolicies": string(compiled)}}
	if _, err := render(t, vals); err == nil || !strings.Contains(err.Error(), "webhook.enroll.nativePolicies was compiled from enrollment generation") {
		t.Errorf("a compile of another policy: %v", err)
	}
	vals = withPolicy(nil)
	vals["webhook"] = map[string]any{"enroll": map[string]any{"objectSelector": map[string]any{"matchLabels": map[string]any{"a": "b"}}}}
	if _, err := render(t, vals); err == nil || !strings.Contains(err.Error(), "express them in the policy") {
		t.Errorf("an enrollment webhook selector with engine native: %v", err)
	}
}
