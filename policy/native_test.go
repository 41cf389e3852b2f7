package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// nativeJSON is the policy's native objects as JSON.
func nativeJSON(t *testing.T, p *Policy) []byte {
	t.Helper()
	objs, err := p.NativePolicies(NativeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const nativePolicy = minimalPolicy + `excludeNamespaces: [legacy]
kinds:
- {apiVersion: argoproj.io/v1alpha1, kind: Rollout, resource: rollouts, podTemplate: spec.template}
enroll:
- name: services
  kinds: [Service]
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}
  labels: {team: "{namespaceLabel:team}"}
  scrape: {port: metrics}
- name: workloads
  kinds: [Deployment, CronJob, Rollout]
  namespaceSelector: {matchLabels: {monitoring: enabled}}
  labels: {monitoring.promenroll.io/scrape: "true", "example.com/ab": "{name}-x"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
`

// TestNativePoliciesAreDeterministicAndOnePerTemplatePath: the same policy
// gives the same bytes; one policy and binding per pod template path, and
// only for paths some rule's kinds use.
func TestNativePoliciesAreDeterministicAndOnePerTemplatePath(t *testing.T) {
	p := mustParse(t, nativePolicy)
	first := nativeJSON(t, p)
	for range 5 {
		if again := nativeJSON(t, mustParse(t, nativePolicy)); string(again) != string(first) {
			t.Fatal("two compilations of the same policy differ")
		}
	}
	objs, _ := p.NativePolicies(NativeOptions{Name: "enroller"})
	var names []string
	for _, o := range objs {
		switch o := o.(type) {
		case *admissionregistrationv1.MutatingAdmissionPolicy:
			names = append(names, "policy "+o.Name)
			if *o.Spec.FailurePolicy != admissionregistrationv1.Ignore {
				t.Errorf("%s fails closed: enrollment fails open, as the webhook's", o.Name)
			}
			ns := o.Spec.MatchConstraints.NamespaceSelector.MatchExpressions[0]
			if ns.Key != "kubernetes.io/metadata.name" || strings.Join(ns.Values, ",") != "kube-node-lease,kube-public,kube-system,legacy,promenroll-system" {
				t.Errorf("%s excludes %v", o.Name, ns.Values)
			}
		case *admissionregistrationv1.MutatingAdmissionPolicyBinding:
			names = append(names, "binding "+o.Name+" -> "+o.Spec.PolicyName)
		}
	}
	want := "policy enroller-enroll-services,binding enroller-enroll-services -> enroller-enroll-services," +
		"policy enroller-enroll-spec-jobtemplate-spec-template,binding enroller-enroll-spec-jobtemplate-spec-template -> enroller-enroll-spec-jobtemplate-spec-template," +
		"policy enroller-enroll-spec-template,binding enroller-enroll-spec-template -> enroller-enroll-spec-template"
	if got := strings.Join(names, ","); got != want {
		t.Errorf("objects:\n%s\nwant\n%s", got, want)
	}
	for _, w := range []string{
		`\"/metadata/labels/example.com~1ab\"`,                                                 // RFC 6901
		`\"/spec/jobTemplate/spec/template/metadata/labels/monitoring.promenroll.io~1scrape\"`, // a CronJob's template
		`request.kind.group == \"argoproj.io\" \u0026\u0026 request.kind.kind == \"Rollout\"`,
		`object.metadata.?name.orValue(\"\") + \"-x\"`, // {name}-x
		`variables.nsLabels[\"team\"]`,
	} {
		if !strings.Contains(string(first), w) {
			t.Errorf("the output lacks %s", w)
		}
	}
}

// TestNativeSelectorsHaveTheAPIServersSemantics: each selector operator
// becomes its CEL, and an empty or absent selector matches everything.
func TestNativeSelectorsHaveTheAPIServersSemantics(t *testing.T) {
	p := mustParse(t, minimalPolicy+`enroll:
- name: r
  kinds: [Deployment]
  selector:
    matchLabels: {tier: web}
    matchExpressions:
    - {key: a, operator: In, values: [x, "y"]}
    - {key: b, operator: NotIn, values: [z]}
    - {key: c, operator: Exists}
    - {key: d, operator: DoesNotExist}
  labels: {l: v}
`)
	js := string(nativeJSON(t, p))
	for _, w := range []string{
		`(\"tier\" in variables.labels \u0026\u0026 variables.labels[\"tier\"] == \"web\")`,
		`(\"a\" in variables.labels \u0026\u0026 variables.labels[\"a\"] in [\"x\", \"y\"])`,
		`(!(\"b\" in variables.labels) || !(variables.labels[\"b\"] in [\"z\"]))`,
		`(\"c\" in variables.labels)`,
		`!(\"d\" in variables.labels)`,
	} {
		if !strings.Contains(js, w) {
			t.Errorf("the output lacks %s", w)
		}
	}
	if got := selectorCEL(nil, "m"); got != "true" {
		t.Errorf("nil selector: %s", got)
	}
}

// TestNativeCompilesUpToMaxNativeRules: MaxNativeRules rules give the
// same number of objects as one (one policy per template path), each rule
// a variable; one more is refused with the reason.
func TestNativeCompilesUpToMaxNativeRules(t *testing.T) {
	rules := func(n int) string {
		var b strings.Builder
		b.WriteString(minimalPolicy + "enroll:\n")
		for i := range n {
			fmt.Fprintf(&b, "- name: r%d\n  kinds: [Deployment, Service]\n  selector: {matchLabels: {app: a%d}}\n  labels: {team%d: \"{namespaceLabel:team}\"}\n", i, i, i)
		}
		return b.String()
	}
	objs, err := mustParse(t, rules(MaxNativeRules)).NativePolicies(NativeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mutating, warning int
	for _, o := range objs {
		switch o.(type) {
		case *admissionregistrationv1.MutatingAdmissionPolicy:
			mutating++
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			warning++
			if b, err := json.Marshal(o); err != nil || len(b) > 200000 {
				t.Errorf("a warnings policy of %d bytes: kubectl apply keeps a copy in an annotation of at most 256 KiB (%v)", len(b), err)
			}
		}
	}
	if mutating != 2 || warning < 2 {
		t.Fatalf("%d mutating and %d warnings policies, want 2 (one per template path) and at least 2", mutating, warning)
	}
	mp := objs[0].(*admissionregistrationv1.MutatingAdmissionPolicy)
	if n := len(mp.Spec.Variables); n < 2*MaxNativeRules {
		t.Errorf("%d variables, want one per rule and old rule", n)
	}
	if _, err := mustParse(t, rules(100)).NativePolicies(NativeOptions{}); err == nil || !strings.Contains(err.Error(), "at most 32 enroll rules, the policy has 100") {
		t.Errorf("100 rules: %v", err)
	}
	// With engine native the policy itself is refused, naming the field,
	// so serve keeps its last good policy and check fails in CI.
	doc := strings.Replace(rules(33), "enroll:\n", "enrollment: {engine: native}\nenroll:\n", 1)
	if _, err := Parse("policy.yaml", []byte(doc), Options{}); err == nil || !strings.Contains(err.Error(), "policy.yaml:3: enrollment.engine: Invalid value: \"native\": native enrollment compiles at most 32 enroll rules, the policy has 33") {
		t.Errorf("engine native, 33 rules: %v", err)
	}
}

// TestEnrollmentGenerationCoversWhatNativeIsCompiledFrom: the generation
// the native policies carry changes with the sections they are compiled
// from and with nothing else, whatever the document's formatting, so the
// chart can tell a stale compile from a current one.
func TestEnrollmentGenerationCoversWhatNativeIsCompiledFrom(t *testing.T) {
	base := mustParse(t, nativePolicy)
	for name, doc := range map[string]string{
		"another order of keys and flow style": strings.Replace(nativePolicy, "kinds:\n- {apiVersion: argoproj.io/v1alpha1, kind: Rollout, resource: rollouts, podTemplate: spec.template}", "kinds:\n- kind: Rollout\n  resource: rollouts\n  podTemplate: spec.template\n  apiVersion: argoproj.io/v1alpha1", 1),
		"another monitors section":             nativePolicy + "monitors: {labels: {release: prom}}\n",
		"the engine":                           nativePolicy + "enrollment: {engine: native}\n",
		"a comment":                            "# team policy\n" + nativePolicy,
	} {
		p := mustParse(t, doc)
		if p.EnrollmentGeneration != base.EnrollmentGeneration {
			t.Errorf("%s changed the enrollment generation", name)
		}
		if name != "another order of keys and flow style" && p.Generation == base.Generation {
			t.Errorf("%s: the policy generation did not change", name)
		}
	}
	for name, doc := range map[string]string{
		"the mode":        nativePolicy + "mode: dry-run\n",
		"an exclusion":    strings.Replace(nativePolicy, "[legacy]", "[legacy, batch]", 1),
		"a rule's label":  strings.Replace(nativePolicy, `"{name}-x"`, `"{name}-y"`, 1),
		"a declared kind": strings.Replace(nativePolicy, "resource: rollouts", "resource: rollout", 1),
	} {
		if mustParse(t, doc).EnrollmentGeneration == base.EnrollmentGeneration {
			t.Errorf("%s left the enrollment generation alone", name)
		}
	}
	out, err := base.NativeYAML(NativeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "enrollment generation "+base.EnrollmentGeneration+":") || strings.Count(string(out), EnrollmentGenerationAnnotation+": ") != strings.Count(string(out), "\n---\n") {
		t.Errorf("the output does not carry its enrollment generation in its header and on each object:\n%.400s", out)
	}
}

// TestNativeRefusesWhatTheAPIServerWould: a rule whose selector lists
// thousands of values compiles to an expression over CEL's 100,000 code
// points: compile refuses it, naming the rule, instead of kubectl apply
// failing later.
func TestNativeRefusesWhatTheAPIServerWould(t *testing.T) {
	values := make([]string, 8000)
	for i := range values {
		values[i] = fmt.Sprintf("app-%05d", i)
	}
	doc := minimalPolicy + "enroll:\n- name: small\n  kinds: [Deployment]\n  labels: {a: b}\n- name: huge\n  kinds: [Deployment]\n  selector: {matchExpressions: [{key: app, operator: In, values: [" + strings.Join(values, ", ") + "]}]}\n  labels: {a: c}\n"
	_, err := mustParse(t, doc).NativePolicies(NativeOptions{})
	if err == nil || !strings.Contains(err.Error(), "enroll[1] (huge): its kinds and selectors compile to a CEL expression of") || !strings.Contains(err.Error(), "over the API server's limit of 100000") {
		t.Errorf("a selector of 8000 values: %v", err)
	}
	small := strings.Join(values[:100], ", ")
	if _, err := mustParse(t, strings.Replace(doc, strings.Join(values, ", "), small, 1)).NativePolicies(NativeOptions{}); err != nil {
		t.Errorf("a selector of 100 values: %v", err)
	}
}
