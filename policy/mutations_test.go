package policy

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/promenroll/promenroll/internal/testdiff"
)

const mutationPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
kinds:
- apiVersion: argoproj.io/v1alpha1
  kind: Rollout
  resource: rollouts
  podTemplate: spec.template
- apiVersion: example.com/v1
  kind: Batch
  resource: batches
  podTemplate: spec.runner.template
  templateUpdateRollsOut: false
- apiVersion: serving.knative.dev/v1
  kind: Service
  resource: services
  podTemplate: spec.template
enroll:
- name: services
  kinds: [Service]
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}
  labels: {monitoring.promenroll.io/scrape: "true"}
- name: workloads
  kinds: [Deployment, StatefulSet, DaemonSet, Job, CronJob, Rollout, Batch, Service.serving.knative.dev]
  labels: {monitoring.promenroll.io/scrape: "true", team: "{namespaceLabel:team}"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
- name: envoy
  kinds: [Deployment]
  selector: {matchLabels: {app: envoy}}
  labels: {monitoring.promenroll.io/scrape: "true"}
  scrape: {port: admin, path: /stats/prometheus}
monitors:
  labels: {release: kps}
`

var (
	deploymentGK     = schema.GroupKind{Group: "apps", Kind: "Deployment"}
	statefulSetGK    = schema.GroupKind{Group: "apps", Kind: "StatefulSet"}
	serviceGK        = schema.GroupKind{Kind: "Service"}
	jobGK            = schema.GroupKind{Group: "batch", Kind: "Job"}
	cronJobGK        = schema.GroupKind{Group: "batch", Kind: "CronJob"}
	rolloutGK        = schema.GroupKind{Group: "argoproj.io", Kind: "Rollout"}
	batchGK          = schema.GroupKind{Group: "example.com", Kind: "Batch"}
	knativeGK        = schema.GroupKind{Group: "serving.knative.dev", Kind: "Service"}
	serviceMonitorGK = schema.GroupKind{Group: groupMonitoring, Kind: "ServiceMonitor"}
	ruleGK           = schema.GroupKind{Group: groupMonitoring, Kind: "PrometheusRule"}
)

var shop = Namespace{Name: "shop", Labels: map[string]string{"team": "payments"}}

// kpsPrometheus selects ServiceMonitors and rules labelled release=kps in
// every namespace.
var kpsPrometheus = PrometheusSelectors{Namespace: "monitoring", Name: "kps",
	ServiceMonitor: &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kps"}}, ServiceMonitorNamespace: &metav1.LabelSelector{},
	Rule: &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kps"}}, RuleNamespace: &metav1.LabelSelector{}}

// mutated is what a test compares of a mutation: the patch as JSON, the
// warnings, the rules that matched and the reason for a skip.
type mutated struct {
	Patch    string
	Warnings []string
	Matched  []string
	Reason   string
}

func mutate(t *testing.T, p *Policy, gk schema.GroupKind, req MutationRequest) mutated {
	t.Helper()
	m, err := p.Mutate(gk, req)
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	patch, err := json.Marshal(m.Patch())
	if err != nil {
		t.Fatal(err)
	}
	if string(patch) == "null" {
		patch = nil
	}
	return mutated{Patch: string(patch), Warnings: m.Warnings(), Matched: m.Matched, Reason: m.Reason}
}

func TestMutationTable(t *testing.T) {
	p := mustParse(t, mutationPolicy)
	dryShop := Namespace{Name: "shop", Labels: shop.Labels, Annotations: map[string]string{ModeAnnotation: "dry-run"}}
	tests := []struct {
		name string
		gk   schema.GroupKind
		req  MutationRequest
		want mutated
	}{
		{
			name: "a Deployment CREATE gets the labels and pod template labels, with namespace substitutions",
			gk:   deploymentGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"api","labels":{"app":"api"}},"spec":{"template":{"metadata":{"labels":{"app":"api"}},"spec":{"containers":[{"ports":[{"name":"metrics","containerPort":9090}]}]}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},{"op":"add","path":"/metadata/labels/team","value":"payments"},{"op":"add","path":"/spec/template/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "an UPDATE puts back the labels the stored object carried from the policy and adds no pod template label",
			gk:   statefulSetGK,
			req: MutationRequest{Operation: Update, Namespace: shop,
				Object:    []byte(`{"metadata":{"name":"db","labels":{"team":"payments"}},"spec":{"template":{"metadata":{"labels":{"app":"db"}}}}}`),
				OldObject: []byte(`{"metadata":{"name":"db","labels":{"team":"payments","monitoring.promenroll.io/scrape":"true"}},"spec":{"template":{"metadata":{"labels":{"app":"db"}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "an opted-out object is left alone, with the reason",
			gk:   deploymentGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"api","labels":{"promenroll.io/enroll":"false"}},"spec":{"template":{}}}`)},
			want: mutated{Reason: "object opted out (promenroll.io/enroll=false)"},
		},
		{
			name: "a dry-run namespace gets warnings and no patch",
			gk:   serviceGK,
			req:  MutationRequest{Operation: Create, Namespace: dryShop, Object: []byte(`{"metadata":{"name":"web","labels":{"app.kubernetes.io/name":"web"}}}`)},
			want: mutated{Warnings: []string{"[dry-run] would add metadata.labels monitoring.promenroll.io/scrape=true (rule services)"}, Matched: []string{"services"}},
		},
		{
			name: "a scrape rule writes the pod template's annotations, and a declared port draws no warning",
			gk:   deploymentGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"gw","labels":{"app":"envoy"}},"spec":{"template":{"metadata":{"labels":{"app":"envoy"}},"spec":{"containers":[{"ports":[{"name":"admin","containerPort":9901}]}]}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},{"op":"add","path":"/metadata/labels/team","value":"payments"},{"op":"add","path":"/spec/template/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},{"op":"add","path":"/spec/template/metadata/annotations","value":{"prometheus.io/path":"/stats/prometheus","prometheus.io/port":"admin"}}]`, Matched: []string{"workloads", "envoy"}},
		},
		{
			name: "a port annotation that names no container port is warned about",
			gk:   statefulSetGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"db","labels":{"monitoring.promenroll.io/scrape":"true","team":"payments"}},"spec":{"template":{"metadata":{"labels":{"monitoring.promenroll.io/scrape":"true"},"annotations":{"prometheus.io/port":"metrcs"}},"spec":{"containers":[{"ports":[{"name":"metrics","containerPort":9187}]}]}}}}`)},
			want: mutated{Warnings: []string{`spec.template.metadata.annotations[prometheus.io/port]="metrcs": no container port is named or numbered metrcs (declared: metrics (9187)), so no target will be scraped: use one of those`}, Matched: []string{"workloads"}},
		},
		{
			name: "a CronJob CREATE labels the pod template of its job template",
			gk:   cronJobGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"report"},"spec":{"schedule":"* * * * *","jobTemplate":{"spec":{"template":{"metadata":{"labels":{"app":"report"}}}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels","value":{"monitoring.promenroll.io/scrape":"true","team":"payments"}},{"op":"add","path":"/spec/jobTemplate/spec/template/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a CronJob UPDATE adds the pod template labels too: only its next Job is made from the template, no pod rolls",
			gk:   cronJobGK,
			req: MutationRequest{Operation: Update, Namespace: shop,
				Object:    []byte(`{"metadata":{"name":"report","labels":{"monitoring.promenroll.io/scrape":"true","team":"payments"}},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{}}}}}}`),
				OldObject: []byte(`{"metadata":{"name":"report","labels":{"monitoring.promenroll.io/scrape":"true","team":"payments"}},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{}}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/spec/jobTemplate/spec/template/metadata/labels","value":{"monitoring.promenroll.io/scrape":"true"}}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a CronJob UPDATE that drops a label it carried from the policy gets it back (sticky)",
			gk:   cronJobGK,
			req: MutationRequest{Operation: Update, Namespace: shop,
				Object:    []byte(`{"metadata":{"name":"report","labels":{"team":"payments"}},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"monitoring.promenroll.io/scrape":"true"}}}}}}}`),
				OldObject: []byte(`{"metadata":{"name":"report","labels":{"monitoring.promenroll.io/scrape":"true","team":"payments"}},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"monitoring.promenroll.io/scrape":"true"}}}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a CronJob in a dry-run namespace gets warnings that name its template's path, and no patch",
			gk:   cronJobGK,
			req:  MutationRequest{Operation: Create, Namespace: dryShop, Object: []byte(`{"metadata":{"name":"report","labels":{"team":"ops"}},"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"labels":{"app":"report"}}}}}}}`)},
			want: mutated{Warnings: []string{
				"[dry-run] would add metadata.labels monitoring.promenroll.io/scrape=true (rule workloads)",
				"[dry-run] would add spec.jobTemplate.spec.template.metadata.labels monitoring.promenroll.io/scrape=true (rule workloads)",
				`[dry-run] metadata.labels team="ops" kept; rule workloads wants "payments"`,
			}, Matched: []string{"workloads"}},
		},
		{
			name: "an opted-out CronJob is left alone, with the reason",
			gk:   cronJobGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"report","labels":{"promenroll.io/enroll":"false"}},"spec":{"jobTemplate":{"spec":{"template":{}}}}}`)},
			want: mutated{Reason: "object opted out (promenroll.io/enroll=false)"},
		},
		{
			name: "a Job CREATE labels its pod template",
			gk:   jobGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"migrate","labels":{"team":"payments"}},"spec":{"template":{"metadata":{"labels":{"app":"migrate"}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},{"op":"add","path":"/spec/template/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a Job UPDATE never adds to its pod template, which the API server keeps immutable",
			gk:   jobGK,
			req: MutationRequest{Operation: Update, Namespace: shop,
				Object:    []byte(`{"metadata":{"name":"migrate","labels":{"team":"payments"}},"spec":{"template":{"metadata":{"labels":{"app":"migrate"}}}}}`),
				OldObject: []byte(`{"metadata":{"name":"migrate","labels":{"team":"payments"}},"spec":{"template":{"metadata":{"labels":{"app":"migrate"}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a Job in a dry-run namespace gets warnings and no patch",
			gk:   jobGK,
			req:  MutationRequest{Operation: Create, Namespace: dryShop, Object: []byte(`{"metadata":{"name":"migrate","labels":{"monitoring.promenroll.io/scrape":"true","team":"payments"}},"spec":{"template":{}}}`)},
			want: mutated{Warnings: []string{"[dry-run] would add spec.template.metadata.labels monitoring.promenroll.io/scrape=true (rule workloads)"}, Matched: []string{"workloads"}},
		},
		{
			name: "a declared Rollout CREATE is enrolled like a Deployment",
			gk:   rolloutGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"apiVersion":"argoproj.io/v1alpha1","kind":"Rollout","metadata":{"name":"api","labels":{"team":"payments"}},"spec":{"template":{"metadata":{"labels":{"app":"api"}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},{"op":"add","path":"/spec/template/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a declared Rollout UPDATE adds no pod template label (that would roll it out) but keeps sticky ones",
			gk:   rolloutGK,
			req: MutationRequest{Operation: Update, Namespace: shop,
				Object:    []byte(`{"metadata":{"name":"api","labels":{"team":"payments"}},"spec":{"template":{"metadata":{"labels":{"app":"api"}}}}}`),
				OldObject: []byte(`{"metadata":{"name":"api","labels":{"team":"payments","monitoring.promenroll.io/scrape":"true"}},"spec":{"template":{"metadata":{"labels":{"app":"api"}}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a declared kind whose template update rolls nothing out gets pod template labels on UPDATE, at its declared path",
			gk:   batchGK,
			req: MutationRequest{Operation: Update, Namespace: shop,
				Object:    []byte(`{"metadata":{"name":"b","labels":{"monitoring.promenroll.io/scrape":"true","team":"payments"}},"spec":{"runner":{"template":{"metadata":{"labels":{"app":"b"}}}}}}`),
				OldObject: []byte(`{"metadata":{"name":"b"}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/spec/runner/template/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a declared kind named like a built-in one is enrolled under its kind.group name, apart from core Services",
			gk:   knativeGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"hello","labels":{"team":"payments"}},"spec":{"template":{"metadata":{}}}}`)},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/monitoring.promenroll.io~1scrape","value":"true"},{"op":"add","path":"/spec/template/metadata/labels","value":{"monitoring.promenroll.io/scrape":"true"}}]`, Matched: []string{"workloads"}},
		},
		{
			name: "a ServiceMonitor gets monitors.labels, and no warning once a Prometheus selects it",
			gk:   serviceMonitorGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"web"}}`), Prometheuses: []PrometheusSelectors{kpsPrometheus}},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels","value":{"release":"kps"}}]`, Matched: []string{MonitorsRule}},
		},
		{
			name: "a monitor whose Prometheus list cannot be read is labelled, and the warning says what was skipped",
			gk:   serviceMonitorGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"web","labels":{"release":"kps"}}}`), PrometheusesErr: errors.New("cache not synced")},
			want: mutated{Warnings: []string{"promenroll could not read the cluster's Prometheus objects (cache not synced): monitors.autoSelect and the check that a Prometheus loads this ServiceMonitor were skipped"}, Matched: []string{MonitorsRule}},
		},
		{
			name: "a PrometheusRule's non-string label is coerced after its labels are added",
			gk:   ruleGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"r","labels":{}},"spec":{"groups":[{"name":"g","rules":[{"alert":"A","expr":"up == 0","labels":{"severity":1}}]}]}}`), Prometheuses: []PrometheusSelectors{kpsPrometheus}},
			want: mutated{Patch: `[{"op":"add","path":"/metadata/labels/release","value":"kps"},{"op":"replace","path":"/spec/groups/0/rules/0/labels/severity","value":"1"}]`,
				Warnings: []string{`spec.groups[0].rules[0].labels[severity] was 1, not a string; promenroll set it to "1"`}, Matched: []string{MonitorsRule}},
		},
		{
			name: "an opted-out PrometheusRule gets neither labels nor coercions nor warnings, as the webhooks never call promenroll for it",
			gk:   ruleGK,
			req:  MutationRequest{Operation: Create, Namespace: shop, Object: []byte(`{"metadata":{"name":"r","labels":{"promenroll.io/enroll":"false"}},"spec":{"groups":[{"name":"g","rules":[{"alert":"A","expr":"up == 0","labels":{"severity":1}}]}]}}`), Prometheuses: []PrometheusSelectors{kpsPrometheus}},
			want: mutated{Reason: "object opted out (promenroll.io/enroll=false)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := testdiff.Diff(tt.want, mutate(t, p, tt.gk, tt.req)); d != "" {
				t.Errorf("mutation (-want +got):\n%s", d)
			}
		})
	}
}

// TestMutationsOfMalformedObjectsWarnAndNeverPanic: objects with ports,
// annotations and maps a careless manifest has get a decision, a warning
// where the scrape will not work, and a patch that applies.
func TestMutationsOfMalformedObjectsWarnAndNeverPanic(t *testing.T) {
	p := mustParse(t, mutationPolicy)
	tests := []struct {
		name, obj string
		gk        schema.GroupKind
		warn      string // part of a warning; "" for none
		err       string // part of the error; "" for none
	}{
		{"a non-numeric port annotation on a Service", `{"metadata":{"name":"w","labels":{"app.kubernetes.io/name":"w"},"annotations":{"prometheus.io/port":"9o9o"}},"spec":{"ports":[{"name":"http","port":80}]}}`, serviceGK, "no Service port is named or numbered 9o9o", ""},
		{"an empty port name", `{"metadata":{"name":"w","labels":{"app.kubernetes.io/name":"w"},"annotations":{"prometheus.io/port":""}},"spec":{"ports":[{"name":"","port":80}]}}`, serviceGK, "not a port number", ""},
		{"duplicate container port names", `{"metadata":{"name":"a"},"spec":{"template":{"metadata":{"annotations":{"prometheus.io/port":"metrics"}},"spec":{"containers":[{"ports":[{"name":"metrics","containerPort":1},{"name":"metrics","containerPort":2}]}]}}}}`, deploymentGK, "", ""},
		{"null labels and annotations maps", `{"metadata":{"name":"a","labels":null,"annotations":null},"spec":{"template":{"metadata":{"labels":null,"annotations":null}}}}`, deploymentGK, "", ""},
		{"a null metadata", `{"metadata":null,"spec":{"template":null}}`, deploymentGK, "pod template labels and annotations skipped", ""},
		{"a port number as a string that JSON cannot fit: the template is skipped, the labels are added", `{"metadata":{"name":"a"},"spec":{"template":{"spec":{"containers":[{"ports":[{"containerPort":"80"}]}]}}}}`, deploymentGK, "spec.template cannot be read as a pod template", ""},
		{"a declared kind whose template path leads to a string", `{"metadata":{"name":"a"},"spec":{"template":"none"}}`, rolloutGK, "pod template labels and annotations skipped (rule workloads): spec.template cannot be read as a pod template", ""},
		{"a declared kind whose template path leads to an array", `{"metadata":{"name":"a"},"spec":[1]}`, rolloutGK, "spec.template cannot be read as a pod template", ""},
		{"a declared kind without the template path", `{"metadata":{"name":"a"},"spec":{}}`, rolloutGK, "the object has no spec.template", ""},
		{"a CronJob without a job template", `{"metadata":{"name":"a"},"spec":{"jobTemplate":{}}}`, cronJobGK, "the object has no spec.jobTemplate.spec.template", ""},
		{"metadata that is not an object is an error", `{"metadata":"a","spec":{}}`, rolloutGK, "", "decode object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Mutate(tt.gk, MutationRequest{Operation: Create, Namespace: shop, Object: []byte(tt.obj)})
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := m.Apply([]byte(tt.obj)); err != nil {
				t.Errorf("the patch does not apply: %v", err)
			}
			got := strings.Join(m.Warnings(), "\n")
			if tt.warn == "" && got != "" || !strings.Contains(got, tt.warn) {
				t.Errorf("warnings %q, want one containing %q", got, tt.warn)
			}
		})
	}
}

// TestEveryKindOfTheTablesIsKnown: the two tables name kinds the policy
// knows (enroll.kinds, monitors.kinds), and every mutated kind reads what
// its entry needs.
func TestEveryKindOfTheTablesIsKnown(t *testing.T) {
	for _, gk := range BuiltinMutatedKinds() {
		if !slices.Contains(EnrollKinds, gk.Kind) && !slices.Contains(LabelledKinds, gk.Kind) {
			t.Errorf("%s is in the mutation table but neither an enroll nor a monitors kind", gk)
		}
		if ReadsPrometheuses(gk) != (gk.Group == groupMonitoring) {
			t.Errorf("%s: reads Prometheuses = %v", gk, ReadsPrometheuses(gk))
		}
	}
	for _, gk := range GatedKinds() {
		if _, ok := mutations[gk]; !ok {
			t.Errorf("%s has a gate but no mutation entry: its monitors.labels would never be added", gk)
		}
	}
}
