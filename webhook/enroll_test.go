package webhook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promenroll/promenroll/internal/testdiff"
)

// A Deployment as the API server sends it: pod template labels equal the
// selector, as they must.
const deploymentJSON = `{"apiVersion":"apps/v1","kind":"Deployment",
"metadata":{"name":"api","namespace":"shop","labels":{"app.kubernetes.io/name":"api"}},
"spec":{"replicas":2,"selector":{"matchLabels":{"app.kubernetes.io/name":"api"}},
"template":{"metadata":{"labels":{"app.kubernetes.io/name":"api"}},
"spec":{"containers":[{"name":"api","image":"registry.example/api:1.0"}]}}}}`

func labelsAt(t *testing.T, obj map[string]any, path ...string) map[string]any {
	t.Helper()
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v is not an object at %s", cur, p)
		}
		cur = m[p]
	}
	m, _ := cur.(map[string]any)
	return m
}

func TestMutateDeploymentCreate(t *testing.T) {
	s := newServer(t, testPolicy)
	r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil))
	if !r.Allowed {
		t.Fatalf("denied: %v", r.Result)
	}
	if r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type = %v, want JSONPatch", r.PatchType)
	}
	wantPatch := `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},` +
		`{"op":"add","path":"/metadata/labels/team","value":"payments"},` +
		`{"op":"add","path":"/spec/template/metadata/labels/monitoring.promenroll.io~1pod-scrape","value":"true"}]`
	if string(r.Patch) != wantPatch {
		t.Errorf("patch =\n%s\nwant\n%s", r.Patch, wantPatch)
	}
	got := applyPatch(t, deploymentJSON, r)
	if diff := testdiff.Diff(map[string]any{"app.kubernetes.io/name": "api", "monitoring.promenroll.io/scrape": "true", "team": "payments"}, labelsAt(t, got, "metadata", "labels")); diff != "" {
		t.Errorf("metadata.labels (-want +got):\n%s", diff)
	}
	if diff := testdiff.Diff(map[string]any{"app.kubernetes.io/name": "api", "monitoring.promenroll.io/pod-scrape": "true"}, labelsAt(t, got, "spec", "template", "metadata", "labels")); diff != "" {
		t.Errorf("pod template labels (-want +got):\n%s", diff)
	}
	if diff := testdiff.Diff(map[string]any{"app.kubernetes.io/name": "api"}, labelsAt(t, got, "spec", "selector", "matchLabels")); diff != "" {
		t.Errorf("spec.selector changed (-want +got):\n%s", diff)
	}
	var orig map[string]any
	_ = json.Unmarshal([]byte(deploymentJSON), &orig)
	// Nothing but the two labels maps may differ.
	delete(got["metadata"].(map[string]any), "labels")
	delete(orig["metadata"].(map[string]any), "labels")
	delete(got["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any), "labels")
	delete(orig["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any), "labels")
	if diff := testdiff.Diff(orig, got); diff != "" {
		t.Errorf("the patch changed more than labels (-orig +patched):\n%s", diff)
	}
}

func TestMutateOnItsOwnOutputGivesNoPatch(t *testing.T) {
	s := newServer(t, testPolicy)
	first := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil))
	patched := applyPatch(t, deploymentJSON, first)
	second := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", patched, nil))
	if len(second.Patch) != 0 || len(second.Warnings) != 0 {
		t.Fatalf("second pass: patch %s, warnings %q", second.Patch, second.Warnings)
	}
	update := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Update, "shop", patched, patched))
	if len(update.Patch) != 0 {
		t.Fatalf("no-op UPDATE got patch %s", update.Patch)
	}
}

func TestMutateSameRequestTwiceGivesIdenticalPatches(t *testing.T) {
	s := newServer(t, testPolicy)
	body := review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil)
	first := s.admit(t, MutatePath, body)
	for range 20 {
		again := s.admit(t, MutatePath, body)
		if string(again.Patch) != string(first.Patch) {
			t.Fatalf("patches differ:\n%s\n%s", first.Patch, again.Patch)
		}
	}
}

func TestMutateServerSideDryRunGetsTheSamePatch(t *testing.T) {
	s := newServer(t, testPolicy)
	normal := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil))
	var ar admissionv1.AdmissionReview
	_ = json.Unmarshal(review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil), &ar)
	dry := true
	ar.Request.DryRun = &dry
	dryResp := s.admit(t, MutatePath, mustJSON(ar))
	if string(dryResp.Patch) != string(normal.Patch) || len(normal.Patch) == 0 {
		t.Fatalf("dryRun patch %s, normal patch %s", dryResp.Patch, normal.Patch)
	}
}

func TestMutateKeepsConflictingLabelAndWarns(t *testing.T) {
	s := newServer(t, testPolicy)
	obj := strings.Replace(deploymentJSON, `"labels":{"app.kubernetes.io/name":"api"}},`, `"labels":{"app.kubernetes.io/name":"api","team":"search"}},`, 1)
	r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", obj, nil))
	got := applyPatch(t, obj, r)
	if team := labelsAt(t, got, "metadata", "labels")["team"]; team != "search" {
		t.Errorf("team = %v, want the user's search", team)
	}
	want := `metadata.labels team="search" kept; rule workloads wants "payments"`
	if !slices.Contains(r.Warnings, want) {
		t.Errorf("warnings %q do not contain %q", r.Warnings, want)
	}
}

func TestMutateUpdateIsStickyAndAddsNoNewPodTemplateLabels(t *testing.T) {
	s := newServer(t, testPolicy)
	created := applyPatch(t, deploymentJSON, s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil)))
	// kubectl replace with the original manifest: policy labels dropped.
	r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Update, "shop", deploymentJSON, created))
	got := applyPatch(t, deploymentJSON, r)
	if diff := testdiff.Diff(labelsAt(t, created, "metadata", "labels"), labelsAt(t, got, "metadata", "labels")); diff != "" {
		t.Errorf("metadata labels not put back (-want +got):\n%s", diff)
	}
	if diff := testdiff.Diff(labelsAt(t, created, "spec", "template", "metadata", "labels"), labelsAt(t, got, "spec", "template", "metadata", "labels")); diff != "" {
		t.Errorf("pod template labels not put back (-want +got):\n%s", diff)
	}

	// An object created before the policy: UPDATE adds metadata labels only.
	r = s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Update, "shop", deploymentJSON, deploymentJSON))
	got = applyPatch(t, deploymentJSON, r)
	if _, ok := labelsAt(t, got, "spec", "template", "metadata", "labels")["monitoring.promenroll.io/pod-scrape"]; ok {
		t.Error("UPDATE added a new pod template label (it would trigger a rollout)")
	}
	if labelsAt(t, got, "metadata", "labels")["monitoring.promenroll.io/scrape"] != "true" {
		t.Error("UPDATE did not add the metadata label")
	}
}

func TestMutateOptOut(t *testing.T) {
	s := newServer(t, testPolicy)
	optedOut := strings.Replace(deploymentJSON, `"labels":{"app.kubernetes.io/name":"api"}},`, `"labels":{"app.kubernetes.io/name":"api","promenroll.io/enroll":"false"}},`, 1)
	for name, body := range map[string][]byte{
		"object label":    review(deploymentGVK, admissionv1.Create, "shop", optedOut, nil),
		"namespace label": review(deploymentGVK, admissionv1.Create, "optout", deploymentJSON, nil),
		"kube-system":     review(deploymentGVK, admissionv1.Create, "kube-system", deploymentJSON, nil),
	} {
		t.Run(name, func(t *testing.T) {
			r := s.admit(t, MutatePath, body)
			if !r.Allowed || len(r.Patch) != 0 {
				t.Fatalf("allowed=%v patch=%s", r.Allowed, r.Patch)
			}
		})
	}
}

func TestMutateDryRunNamespaceWarnsWithoutPatching(t *testing.T) {
	s := newServer(t, testPolicy)
	r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "sandbox", deploymentJSON, nil))
	if !r.Allowed || len(r.Patch) != 0 {
		t.Fatalf("allowed=%v patch=%s", r.Allowed, r.Patch)
	}
	want := []string{
		"[dry-run] would add metadata.labels monitoring.promenroll.io/scrape=true (rule workloads)",
		"[dry-run] would add metadata.labels team=lab (rule workloads)",
		"[dry-run] would add spec.template.metadata.labels monitoring.promenroll.io/pod-scrape=true (rule workloads)",
	}
	if diff := testdiff.Diff(want, r.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if r.AuditAnnotations["dry-run"] == "" {
		t.Errorf("no dry-run audit annotation: %v", r.AuditAnnotations)
	}
}

func TestMutateDryRunWarningsStayWithinAPILimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: promenroll.io/v1alpha1\nkind: Policy\nmode: dry-run\nenroll:\n- name: many\n  kinds: [Deployment]\n  labels:\n")
	for i := range 60 {
		b.WriteString("    example.promenroll.io/a-rather-long-label-key-number-" + strings.Repeat("x", 10) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ": " + strings.Repeat("v", 60) + "\n")
	}
	s := newServer(t, b.String())
	r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil))
	if len(r.Patch) != 0 {
		t.Fatalf("dry-run patched: %s", r.Patch)
	}
	total := 0
	for _, w := range r.Warnings {
		n := utf8.RuneCountInString(w)
		if n > 256 {
			t.Errorf("warning of %d characters: %q", n, w)
		}
		total += n
	}
	if total > 4096 {
		t.Errorf("warnings total %d characters, over 4 KiB", total)
	}
	if last := r.Warnings[len(r.Warnings)-1]; !strings.HasPrefix(last, "... and ") {
		t.Errorf("cut list does not end with an and-N-more line: %q", last)
	}
}

func TestMutateNullAndMissingLabelMaps(t *testing.T) {
	s := newServer(t, testPolicy)
	for name, obj := range map[string]string{
		"null labels":            `{"metadata":{"name":"api","labels":null},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":null},"spec":{}}}}`,
		"missing labels":         `{"metadata":{"name":"api"},"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"spec":{}}}}`,
		"missing template":       `{"metadata":{"name":"api"},"spec":{"selector":{"matchLabels":{"a":"b"}}}}`,
		"template metadata null": `{"metadata":{"name":"api"},"spec":{"template":{"metadata":null}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := s.admit(t, MutatePath, review(deploymentGVK, admissionv1.Create, "shop", obj, nil))
			if !r.Allowed {
				t.Fatalf("denied: %v", r.Result)
			}
			got := applyPatch(t, obj, r)
			if labelsAt(t, got, "metadata", "labels")["monitoring.promenroll.io/scrape"] != "true" {
				t.Errorf("metadata label not added: %s", r.Patch)
			}
			if spec, _ := got["spec"].(map[string]any); spec["template"] != nil {
				if labelsAt(t, got, "spec", "template", "metadata", "labels")["monitoring.promenroll.io/pod-scrape"] != "true" {
					t.Errorf("pod template label not added: %s", r.Patch)
				}
			}
		})
	}
}

func TestMutateService(t *testing.T) {
	s := newServer(t, testPolicy)
	svc := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"web","labels":{"app.kubernetes.io/name":"web"}},"spec":{"selector":{"app.kubernetes.io/name":"web"},"ports":[{"port":80}]}}`
	r := s.admit(t, MutatePath, review(serviceGVK, admissionv1.Create, "shop", svc, nil))
	got := applyPatch(t, svc, r)
	if labelsAt(t, got, "metadata", "labels")["monitoring.promenroll.io/scrape"] != "true" {
		t.Errorf("Service not enrolled: %s", r.Patch)
	}
	if diff := testdiff.Diff(map[string]any{"app.kubernetes.io/name": "web"}, labelsAt(t, got, "spec", "selector")); diff != "" {
		t.Errorf("Service spec.selector changed: %s", diff)
	}
}

const scrapePolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
enroll:
- name: envoy
  kinds: [Deployment, Service]
  labels: {monitoring.promenroll.io/scrape: "true"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
  scrape: {port: admin, path: /stats/prometheus}
`

func TestMutateWritesScrapeAnnotations(t *testing.T) {
	s := newServer(t, scrapePolicy)
	tests := []struct {
		name, obj string
		kind      metav1.GroupVersionKind
		wantPatch string
		wantWarn  []string
	}{{
		name: "a Deployment gets them on its pod template, beside the labels",
		kind: deploymentGVK,
		obj: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"envoy"},"spec":{"template":{"metadata":{"annotations":{"a/b":"c"}},
"spec":{"containers":[{"name":"envoy","ports":[{"name":"admin","containerPort":9901}]}]}}}}`,
		wantPatch: `[{"op":"add","path":"/metadata/labels","value":{"monitoring.promenroll.io/scrape":"true"}},` +
			`{"op":"add","path":"/spec/template/metadata/labels","value":{"monitoring.promenroll.io/scrape":"true"}},` +
			`{"op":"add","path":"/spec/template/metadata/annotations/prometheus.io~1path","value":"/stats/prometheus"},` +
			`{"op":"add","path":"/spec/template/metadata/annotations/prometheus.io~1port","value":"admin"}]`,
	}, {
		name: "a pod template without metadata gets it whole, labels and annotations in one operation",
		kind: deploymentGVK,
		obj: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"envoy","labels":{}},"spec":{"template":{
"spec":{"containers":[{"name":"envoy","ports":[{"name":"http","containerPort":8080}]}]}}}}`,
		wantPatch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},` +
			`{"op":"add","path":"/spec/template/metadata","value":{"annotations":{"prometheus.io/path":"/stats/prometheus","prometheus.io/port":"admin"},"labels":{"monitoring.promenroll.io/scrape":"true"}}}]`,
		wantWarn: []string{`spec.template.metadata.annotations[prometheus.io/port]="admin": no container port is named or numbered admin (declared: http (8080)), so no target will be scraped: use one of those`},
	}, {
		name: "a Service gets them on itself",
		kind: serviceGVK,
		obj:  `{"apiVersion":"v1","kind":"Service","metadata":{"name":"envoy","labels":{"app":"envoy"}},"spec":{"ports":[{"name":"admin","port":9901}]}}`,
		wantPatch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},` +
			`{"op":"add","path":"/metadata/annotations","value":{"prometheus.io/path":"/stats/prometheus","prometheus.io/port":"admin"}}]`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.admit(t, MutatePath, review(tt.kind, admissionv1.Create, "no-team", tt.obj, nil))
			if string(r.Patch) != tt.wantPatch {
				t.Errorf("patch =\n%s\nwant\n%s", r.Patch, tt.wantPatch)
			}
			if diff := testdiff.Diff(tt.wantWarn, r.Warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
			applyPatch(t, tt.obj, r) // the patch applies to the object as sent
		})
	}
}
