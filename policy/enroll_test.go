package policy

import (
	"strings"
	"testing"

	"github.com/promenroll/promenroll/internal/testdiff"
)

const enrollPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
mode: enforce
excludeNamespaces: [legacy]
enroll:
- name: web-services
  kinds: [Service]
  namespaceSelector: {matchLabels: {monitoring: enabled}}
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}
  labels:
    monitoring.promenroll.io/scrape: "true"
    team: "{namespaceLabel:team}"
- name: workloads
  kinds: [Deployment, StatefulSet, DaemonSet]
  labels:
    monitoring.promenroll.io/scrape: "true"
    app.kubernetes.io/instance: "{name}"
  podTemplateLabels:
    monitoring.promenroll.io/pod-scrape: "true"
    app.kubernetes.io/part-of: "{label:app.kubernetes.io/name}"
- name: shadow
  kinds: [Deployment]
  selector: {matchLabels: {tier: experimental}}
  labels:
    monitoring.promenroll.io/tier: experimental
  mode: dry-run
`

var monitoringNS = Namespace{Name: "shop", Labels: map[string]string{"monitoring": "enabled", "team": "payments"}}

func deployment(labels, tmpl map[string]string) Object {
	return Object{Kind: "Deployment", Name: "api", Namespace: "shop", Labels: labels, PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateLabels: tmpl}
}

func change(t Target, k, v, rule string) LabelChange {
	return LabelChange{Target: t, Key: k, Value: v, Rule: rule, Mode: ModeEnforce}
}

func TestEnroll(t *testing.T) {
	p := mustParse(t, enrollPolicy)
	appLabels := map[string]string{"app.kubernetes.io/name": "api"}
	tests := []struct {
		name string
		req  EnrollRequest
		want Decision
	}{{
		name: "a new deployment gets metadata and pod template labels, with substitutions",
		req:  EnrollRequest{Operation: Create, Object: deployment(appLabels, map[string]string{"app": "api"}), Namespace: monitoringNS},
		want: Decision{Matched: []string{"workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "app.kubernetes.io/instance", "api", "workloads"),
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads"),
			change(PodTemplateLabels, "app.kubernetes.io/part-of", "api", "workloads"),
			change(PodTemplateLabels, "monitoring.promenroll.io/pod-scrape", "true", "workloads"),
		}},
	}, {
		name: "an existing label with another value is kept and a warning names the conflict",
		req: EnrollRequest{Operation: Create, Namespace: monitoringNS, Object: deployment(
			map[string]string{"app.kubernetes.io/name": "api", "monitoring.promenroll.io/scrape": "false", "app.kubernetes.io/instance": "api"},
			map[string]string{"monitoring.promenroll.io/pod-scrape": "true", "app.kubernetes.io/part-of": "api"})},
		want: Decision{Matched: []string{"workloads"}, Warnings: []string{
			`metadata.labels monitoring.promenroll.io/scrape="false" kept; rule workloads wants "true"`,
		}},
	}, {
		name: "a substitution with no source skips that label with a warning and keeps the others",
		req:  EnrollRequest{Operation: Create, Object: deployment(nil, nil), Namespace: monitoringNS},
		want: Decision{Matched: []string{"workloads"},
			Changes: []LabelChange{
				change(MetadataLabels, "app.kubernetes.io/instance", "api", "workloads"),
				change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads"),
				change(PodTemplateLabels, "monitoring.promenroll.io/pod-scrape", "true", "workloads"),
			},
			Warnings: []string{"pod template label app.kubernetes.io/part-of skipped (rule workloads): {label:app.kubernetes.io/name}: the object has no label app.kubernetes.io/name"},
		},
	}, {
		name: "a substitution that yields an invalid label value skips that label with a warning",
		req: EnrollRequest{Operation: Create, Namespace: monitoringNS, Object: Object{Kind: "Deployment", Name: strings.Repeat("a", 70), Namespace: "shop",
			Labels: appLabels, PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateLabels: map[string]string{"app.kubernetes.io/part-of": "api", "monitoring.promenroll.io/pod-scrape": "true"}}},
		want: Decision{Matched: []string{"workloads"},
			Changes:  []LabelChange{change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads")},
			Warnings: []string{`label app.kubernetes.io/instance skipped (rule workloads): value "` + strings.Repeat("a", 70) + `" is not a valid label value: must be no more than 63 bytes`},
		},
	}, {
		name: "a service in a selected namespace gets the namespace's team label",
		req: EnrollRequest{Operation: Create, Namespace: monitoringNS,
			Object: Object{Kind: "Service", Name: "web", Namespace: "shop", Labels: map[string]string{"app.kubernetes.io/name": "web"}}},
		want: Decision{Matched: []string{"web-services"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "web-services"),
			change(MetadataLabels, "team", "payments", "web-services"),
		}},
	}, {
		name: "a generateName object without a name skips {name} with a warning",
		req:  EnrollRequest{Operation: Create, Object: Object{Kind: "DaemonSet", Namespace: "shop", Labels: appLabels, PodTemplatePath: "spec.template", HasPodTemplate: true}, Namespace: monitoringNS},
		want: Decision{Matched: []string{"workloads"},
			Changes: []LabelChange{
				change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads"),
				change(PodTemplateLabels, "app.kubernetes.io/part-of", "api", "workloads"),
				change(PodTemplateLabels, "monitoring.promenroll.io/pod-scrape", "true", "workloads"),
			},
			Warnings: []string{"label app.kubernetes.io/instance skipped (rule workloads): {name}: the object has no name yet (generateName)"},
		},
	}, {
		name: "a service in a namespace without the selected label is not enrolled",
		req:  EnrollRequest{Operation: Create, Object: Object{Kind: "Service", Name: "web", Namespace: "other", Labels: appLabels}, Namespace: Namespace{Name: "other"}},
		want: Decision{Reason: "no enrollment rule matches"},
	}, {
		name: "the opt-out label on the object turns enrollment off",
		req:  EnrollRequest{Operation: Create, Object: deployment(map[string]string{OptOutLabel: "false"}, nil), Namespace: monitoringNS},
		want: Decision{Reason: "object opted out (promenroll.io/enroll=false)"},
	}, {
		name: "the opt-out label on the namespace turns enrollment off",
		req:  EnrollRequest{Operation: Create, Object: deployment(nil, nil), Namespace: Namespace{Name: "shop", Labels: map[string]string{OptOutLabel: "false"}}},
		want: Decision{Reason: "namespace shop opted out (promenroll.io/enroll=false)"},
	}, {
		name: "kube-system is excluded by default",
		req:  EnrollRequest{Operation: Create, Object: deployment(nil, nil), Namespace: Namespace{Name: "kube-system"}},
		want: Decision{Reason: "namespace kube-system is excluded"},
	}, {
		name: "promenroll's own namespace is excluded",
		req:  EnrollRequest{Operation: Create, Object: deployment(nil, nil), Namespace: Namespace{Name: "promenroll-system"}},
		want: Decision{Reason: "namespace promenroll-system is excluded"},
	}, {
		name: "a namespace listed in excludeNamespaces is excluded",
		req:  EnrollRequest{Operation: Create, Object: deployment(nil, nil), Namespace: Namespace{Name: "legacy"}},
		want: Decision{Reason: "namespace legacy is excluded"},
	}, {
		name: "a dry-run rule reports what it would add and an enforce rule still applies",
		req:  EnrollRequest{Operation: Create, Object: deployment(map[string]string{"tier": "experimental", "app.kubernetes.io/name": "api"}, map[string]string{"app.kubernetes.io/part-of": "api", "monitoring.promenroll.io/pod-scrape": "true"}), Namespace: monitoringNS},
		want: Decision{Matched: []string{"workloads", "shadow"}, Changes: []LabelChange{
			change(MetadataLabels, "app.kubernetes.io/instance", "api", "workloads"),
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads"),
			{Target: MetadataLabels, Key: "monitoring.promenroll.io/tier", Value: "experimental", Rule: "shadow", Mode: ModeDryRun},
		}},
	}, {
		name: "the namespace annotation relaxes every rule to dry-run",
		req: EnrollRequest{Operation: Create, Object: Object{Kind: "StatefulSet", PodTemplatePath: "spec.template", Name: "db", Namespace: "shop", Labels: map[string]string{"app.kubernetes.io/instance": "db", "monitoring.promenroll.io/scrape": "true"}},
			Namespace: Namespace{Name: "shop", Annotations: map[string]string{ModeAnnotation: "dry-run"}}},
		want: Decision{Matched: []string{"workloads"}, Warnings: []string{"[dry-run] pod template labels and annotations skipped (rule workloads): the object has no spec.template"}},
	}, {
		name: "an update adds missing metadata labels but no new pod template labels",
		req: EnrollRequest{Operation: Update, Namespace: monitoringNS,
			Object: deployment(appLabels, map[string]string{"app": "api"}),
			Old:    ptr(deployment(appLabels, map[string]string{"app": "api"}))},
		want: Decision{Matched: []string{"workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "app.kubernetes.io/instance", "api", "workloads"),
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads"),
		}},
	}, {
		name: "an update that drops policy labels gets them back (sticky), pod template included",
		req: EnrollRequest{Operation: Update, Namespace: monitoringNS,
			Object: deployment(map[string]string{"app.kubernetes.io/name": "api", "app.kubernetes.io/instance": "api"}, map[string]string{"app": "api"}),
			Old: ptr(deployment(
				map[string]string{"app.kubernetes.io/name": "api", "app.kubernetes.io/instance": "api", "monitoring.promenroll.io/scrape": "true"},
				map[string]string{"app": "api", "monitoring.promenroll.io/pod-scrape": "true", "app.kubernetes.io/part-of": "api"}))},
		want: Decision{Matched: []string{"workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads"),
			{Target: PodTemplateLabels, Key: "app.kubernetes.io/part-of", Value: "api", Rule: "workloads", Mode: ModeEnforce, Sticky: true},
			{Target: PodTemplateLabels, Key: "monitoring.promenroll.io/pod-scrape", Value: "true", Rule: "workloads", Mode: ModeEnforce, Sticky: true},
		}},
	}, {
		name: "an update does not put back a label the old object carried with a user's value",
		req: EnrollRequest{Operation: Update, Namespace: monitoringNS,
			Object: deployment(appLabels, map[string]string{"app": "api"}),
			Old:    ptr(deployment(appLabels, map[string]string{"app": "api", "monitoring.promenroll.io/pod-scrape": "no"}))},
		want: Decision{Matched: []string{"workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "app.kubernetes.io/instance", "api", "workloads"),
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "workloads"),
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Enroll(tt.req)
			if diff := testdiff.Diff(tt.want, got); diff != "" {
				t.Errorf("Enroll() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestEnrollIsIdempotentOnItsOwnOutput(t *testing.T) {
	p := mustParse(t, enrollPolicy)
	obj := deployment(map[string]string{"app.kubernetes.io/name": "api"}, map[string]string{"app": "api"})
	first := p.Enroll(EnrollRequest{Operation: Create, Object: obj, Namespace: monitoringNS})
	applied := applyChanges(obj, first.Enforced())
	second := p.Enroll(EnrollRequest{Operation: Create, Object: applied, Namespace: monitoringNS})
	if len(second.Changes) != 0 || len(second.Warnings) != 0 {
		t.Fatalf("second pass over the first pass's output changed something: %+v", second)
	}
	update := p.Enroll(EnrollRequest{Operation: Update, Object: applied, Old: &applied, Namespace: monitoringNS})
	if len(update.Changes) != 0 {
		t.Fatalf("an UPDATE that changes nothing got changes: %+v", update.Changes)
	}
}

// TestNeedsOldNeverChangesADecision: whenever NeedsOld says the stored
// object cannot matter, Enroll decides exactly the same without it, for
// every combination of new and stored objects below; and an enrolled object
// does not need it while one missing a rule's key does.
func TestNeedsOldNeverChangesADecision(t *testing.T) {
	p := mustParse(t, enrollPolicy)
	created := deployment(map[string]string{"app.kubernetes.io/name": "api"}, map[string]string{"app": "api"})
	enrolled := applyChanges(created, p.Enroll(EnrollRequest{Operation: Create, Object: created, Namespace: monitoringNS}).Enforced())
	// The shadow rule's key is missing, and the stored object may have
	// matched its selector: it is needed. Without such a rule it is not.
	if !p.NeedsOld(enrolled) {
		t.Errorf("the stored object may carry the shadow rule's label, but NeedsOld is false")
	}
	workloadsOnly := mustParse(t, enrollPolicy[:strings.Index(enrollPolicy, "- name: shadow")])
	if workloadsOnly.NeedsOld(enrolled) {
		t.Errorf("an enrolled Deployment needs its stored object: %+v", enrolled)
	}
	dropped := applyChanges(enrolled, nil)
	delete(dropped.PodTemplateLabels, "monitoring.promenroll.io/pod-scrape")
	if !p.NeedsOld(dropped) {
		t.Error("a Deployment that dropped a pod template label the policy set does not need its stored object")
	}
	objects := []Object{enrolled, dropped, deployment(nil, nil), deployment(map[string]string{"tier": "experimental"}, nil),
		applyChanges(enrolled, []LabelChange{change(MetadataLabels, "tier", "experimental", "")}),
		applyChanges(enrolled, []LabelChange{change(MetadataLabels, "monitoring.promenroll.io/scrape", "false", "")}),
		{Kind: "Service", Name: "api", Namespace: "shop", Labels: map[string]string{"app.kubernetes.io/name": "api", "monitoring.promenroll.io/scrape": "true", "team": "payments"}},
		{Kind: "Service", Name: "api", Namespace: "shop", Labels: map[string]string{"app.kubernetes.io/name": "api"}},
		{Kind: "Deployment", Name: "bare", Namespace: "shop", Labels: enrolled.Labels},
	}
	checked := 0
	for _, p := range []*Policy{p, workloadsOnly} {
		for _, obj := range objects {
			if p.NeedsOld(obj) {
				continue
			}
			for _, old := range objects {
				if old.Kind != obj.Kind { // an UPDATE keeps the kind
					continue
				}
				for _, ns := range []Namespace{monitoringNS, {Name: "shop"}, {Name: "legacy"}} {
					with := p.Enroll(EnrollRequest{Operation: Update, Object: obj, Old: &old, Namespace: ns})
					without := p.Enroll(EnrollRequest{Operation: Update, Object: obj, Namespace: ns})
					if diff := testdiff.Diff(with, without); diff != "" {
						t.Errorf("NeedsOld(%+v) is false but the stored %+v changes the decision (-with +without):\n%s", obj, old, diff)
					}
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no object was judged independent of its stored version")
	}
}

func TestEnrollNeverTouchesLabelsItDoesNotOwn(t *testing.T) {
	p := mustParse(t, enrollPolicy)
	obj := deployment(map[string]string{"app.kubernetes.io/name": "api", "monitoring.promenroll.io/scrape": "no"}, nil)
	for _, c := range p.Enroll(EnrollRequest{Operation: Create, Object: obj, Namespace: monitoringNS}).Changes {
		if _, exists := obj.Labels[c.Key]; exists && c.Target == MetadataLabels {
			t.Errorf("change %+v targets a label the object already has", c)
		}
		if c.Target != MetadataLabels && c.Target != PodTemplateLabels {
			t.Errorf("change %+v targets %s", c, c.Target)
		}
	}
}

func applyChanges(o Object, cs []LabelChange) Object {
	o.Labels = clone(o.Labels)
	o.PodTemplateLabels = clone(o.PodTemplateLabels)
	for _, c := range cs {
		if c.Target == MetadataLabels {
			o.Labels[c.Key] = c.Value
		} else {
			o.PodTemplateLabels[c.Key] = c.Value
		}
	}
	return o
}

func clone(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestMonitorLabels(t *testing.T) {
	p := mustParse(t, `apiVersion: promenroll.io/v1alpha1
kind: Policy
monitors:
  labels: {release: kube-prometheus-stack}
`)
	tests := []struct {
		name string
		obj  Object
		ns   Namespace
		want Decision
	}{{
		name: "a ServiceMonitor without the release label gets it",
		obj:  Object{Kind: "ServiceMonitor", Name: "web", Namespace: "shop"},
		ns:   Namespace{Name: "shop"},
		want: Decision{Matched: []string{MonitorsRule}, Changes: []LabelChange{change(MetadataLabels, "release", "kube-prometheus-stack", MonitorsRule)}},
	}, {
		name: "a PodMonitor with another release keeps it and is warned",
		obj:  Object{Kind: "PodMonitor", Name: "web", Namespace: "shop", Labels: map[string]string{"release": "other"}},
		ns:   Namespace{Name: "shop"},
		want: Decision{Matched: []string{MonitorsRule}, Warnings: []string{`metadata.labels release="other" kept; rule monitors wants "kube-prometheus-stack"`}},
	}, {
		name: "a PrometheusRule in a dry-run namespace is only reported",
		obj:  Object{Kind: "PrometheusRule", Name: "r", Namespace: "shop"},
		ns:   Namespace{Name: "shop", Annotations: map[string]string{ModeAnnotation: "dry-run"}},
		want: Decision{Matched: []string{MonitorsRule}, Changes: []LabelChange{{Target: MetadataLabels, Key: "release", Value: "kube-prometheus-stack", Rule: MonitorsRule, Mode: ModeDryRun}}},
	}, {
		name: "a Deployment is not a monitor kind",
		obj:  Object{Kind: "Deployment", Name: "web", Namespace: "shop"},
		ns:   Namespace{Name: "shop"},
		want: Decision{Reason: "neither monitors.labels nor monitors.autoSelect applies to Deployment"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := testdiff.Diff(tt.want, p.MonitorLabels(tt.obj, tt.ns, nil)); diff != "" {
				t.Errorf("MonitorLabels() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNamespaceAnnotationCannotTighten(t *testing.T) {
	p := mustParse(t, strings.Replace(enrollPolicy, "mode: enforce", "mode: dry-run", 1))
	d := p.Enroll(EnrollRequest{Operation: Create, Object: deployment(nil, nil),
		Namespace: Namespace{Name: "shop", Annotations: map[string]string{ModeAnnotation: "enforce"}}})
	if len(d.Enforced()) != 0 {
		t.Fatalf("a namespace annotation tightened dry-run to enforce: %+v", d.Enforced())
	}
	if len(d.DryRun()) == 0 {
		t.Fatal("dry-run policy reported nothing")
	}
}
