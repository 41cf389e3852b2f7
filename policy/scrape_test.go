package policy

import (
	"errors"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/promenroll/promenroll/internal/testdiff"
)

const scrapePolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
enroll:
- name: envoy
  kinds: [Deployment, Service]
  selector: {matchLabels: {app: envoy}}
  labels: {monitoring.promenroll.io/scrape: "true"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
  scrape: {port: admin, path: /stats/prometheus}
- name: workloads
  kinds: [Deployment]
  labels: {monitoring.promenroll.io/scrape: "true"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
`

func TestScrapeAnnotationsAreInjectedLikeLabels(t *testing.T) {
	p := mustParse(t, scrapePolicy)
	ns := Namespace{Name: "edge"}
	envoyPorts := []Port{{Name: "admin", Number: 9901}, {Name: "http", Number: 8080}}
	envoy := func(ann map[string]string) Object {
		return Object{Kind: "Deployment", Name: "envoy", Namespace: "edge", Labels: map[string]string{"app": "envoy"},
			PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateLabels: map[string]string{"app": "envoy"}, PodTemplateAnnotations: ann, Ports: envoyPorts}
	}
	svc := func(ann map[string]string) Object {
		return Object{Kind: "Service", Name: "envoy", Namespace: "edge", Labels: map[string]string{"app": "envoy"}, Annotations: ann,
			Ports: []Port{{Name: "admin", Number: 9901, TargetPort: intstr.FromString("admin")}}}
	}
	scrape := map[string]string{"monitoring.promenroll.io/scrape": "true"}
	tests := []struct {
		name string
		req  EnrollRequest
		want Decision
	}{{
		name: "a new Deployment gets the scrape annotations on its pod template",
		req:  EnrollRequest{Operation: Create, Object: envoy(nil), Namespace: ns},
		want: Decision{Matched: []string{"envoy", "workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			change(PodTemplateLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			change(PodTemplateAnnotations, PathAnnotation, "/stats/prometheus", "envoy"),
			change(PodTemplateAnnotations, PortAnnotation, "admin", "envoy"),
		}},
	}, {
		name: "an annotation the pod template already has is kept, with a warning",
		req:  EnrollRequest{Operation: Create, Object: envoy(map[string]string{PortAnnotation: "9901"}), Namespace: ns},
		want: Decision{Matched: []string{"envoy", "workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			change(PodTemplateLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			change(PodTemplateAnnotations, PathAnnotation, "/stats/prometheus", "envoy"),
		}, Warnings: []string{`spec.template.metadata.annotations prometheus.io/port="9901" kept; rule envoy wants "admin"`}},
	}, {
		name: "an UPDATE adds nothing to the pod template, so no rollout follows",
		req: EnrollRequest{Operation: Update, Namespace: ns,
			Object: Object{Kind: "Deployment", Name: "envoy", Namespace: "edge", Labels: map[string]string{"app": "envoy", "monitoring.promenroll.io/scrape": "true"},
				PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateLabels: map[string]string{"app": "envoy"}, Ports: envoyPorts},
			Old: &Object{Kind: "Deployment", Name: "envoy", Namespace: "edge", Labels: map[string]string{"app": "envoy"},
				PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateLabels: map[string]string{"app": "envoy"}}},
		want: Decision{Matched: []string{"envoy", "workloads"}},
	}, {
		name: "an UPDATE that drops an injected annotation puts it back (the stored template had it)",
		req: EnrollRequest{Operation: Update, Namespace: ns,
			Object: envoy(map[string]string{PathAnnotation: "/stats/prometheus"}),
			Old:    &Object{Kind: "Deployment", Name: "envoy", Namespace: "edge", Labels: map[string]string{"app": "envoy"}, PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateAnnotations: map[string]string{PortAnnotation: "admin", PathAnnotation: "/stats/prometheus"}}},
		want: Decision{Matched: []string{"envoy", "workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			{Target: PodTemplateAnnotations, Key: PortAnnotation, Value: "admin", Rule: "envoy", Mode: ModeEnforce, Sticky: true},
		}},
	}, {
		name: "a Service gets the scrape annotations on itself",
		req:  EnrollRequest{Operation: Update, Object: svc(map[string]string{"note": "x"}), Old: &Object{Kind: "Service", Name: "envoy", Namespace: "edge"}, Namespace: ns},
		want: Decision{Matched: []string{"envoy"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			change(MetadataAnnotations, PathAnnotation, "/stats/prometheus", "envoy"),
			change(MetadataAnnotations, PortAnnotation, "admin", "envoy"),
		}},
	}, {
		name: "a scrape port the workload does not declare is warned about",
		req: EnrollRequest{Operation: Create, Namespace: ns, Object: Object{Kind: "Deployment", Name: "envoy", Namespace: "edge",
			Labels: map[string]string{"app": "envoy"}, PodTemplatePath: "spec.template", HasPodTemplate: true, Ports: []Port{{Name: "http", Number: 8080}}}},
		want: Decision{Matched: []string{"envoy", "workloads"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			change(PodTemplateLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
			change(PodTemplateAnnotations, PathAnnotation, "/stats/prometheus", "envoy"),
			change(PodTemplateAnnotations, PortAnnotation, "admin", "envoy"),
		}, Warnings: []string{`spec.template.metadata.annotations[prometheus.io/port]="admin": no container port is named or numbered admin (declared: http (8080)), so no target will be scraped: use one of those`}},
	}, {
		name: "a user's non-numeric, invalid port annotation and a path without a slash are warned about",
		req: EnrollRequest{Operation: Create, Namespace: ns, Object: Object{Kind: "Deployment", Name: "api", Namespace: "edge", PodTemplatePath: "spec.template", HasPodTemplate: true,
			PodTemplateAnnotations: map[string]string{PortAnnotation: "metrics port", PathAnnotation: "metrics", SchemeAnnotation: "ftp"}, PodTemplateLabels: scrape, Labels: scrape}},
		want: Decision{Matched: []string{"workloads"}, Warnings: []string{
			`spec.template.metadata.annotations[prometheus.io/port]="metrics port": not a port number (1-65535) nor a port name: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-); no target will be scraped: set it to the name or number of a port the object declares`,
			`spec.template.metadata.annotations[prometheus.io/path]="metrics": must start with "/"; it is ignored and /metrics is scraped`,
			`spec.template.metadata.annotations[prometheus.io/scheme]="ftp": must be http or https; it is ignored and http is used`,
		}},
	}, {
		name: "a numeric port annotation matching a container port number is fine",
		req: EnrollRequest{Operation: Create, Namespace: ns, Object: Object{Kind: "Deployment", Name: "api", Namespace: "edge", PodTemplatePath: "spec.template", HasPodTemplate: true,
			PodTemplateAnnotations: map[string]string{PortAnnotation: "8080"}, PodTemplateLabels: scrape, Labels: scrape, Ports: []Port{{Name: "web", Number: 8080}}}},
		want: Decision{Matched: []string{"workloads"}},
	}, {
		name: "a Service annotation with the Service port number, not the endpoint's, is warned about",
		req: EnrollRequest{Operation: Create, Namespace: ns, Object: Object{Kind: "Service", Name: "envoy", Namespace: "edge", Labels: map[string]string{"app": "envoy"},
			Annotations: map[string]string{PortAnnotation: "80", PathAnnotation: "/metrics"}, Ports: []Port{{Name: "web", Number: 80, TargetPort: intstr.FromInt32(8080)}}}},
		want: Decision{Matched: []string{"envoy"}, Changes: []LabelChange{
			change(MetadataLabels, "monitoring.promenroll.io/scrape", "true", "envoy"),
		}, Warnings: []string{
			`metadata.annotations prometheus.io/path="/metrics" kept; rule envoy wants "/stats/prometheus"`,
			`metadata.annotations prometheus.io/port="80" kept; rule envoy wants "admin"`,
			`metadata.annotations[prometheus.io/port]="80": Service port 80 forwards to targetPort 8080, and the endpoint's port is what is matched: use the port's name ("web") or 8080; no target will be scraped`,
		}},
	}, {
		name: "an object no rule matches gets no scrape warnings",
		req: EnrollRequest{Operation: Create, Namespace: ns, Object: Object{Kind: "Service", Name: "db", Namespace: "edge",
			Annotations: map[string]string{PortAnnotation: "nope nope"}}},
		want: Decision{Reason: "no enrollment rule matches"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := testdiff.Diff(tt.want, p.Enroll(tt.req)); diff != "" {
				t.Errorf("Enroll() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScrapeSettingsAreCheckedAtLoad(t *testing.T) {
	doc := `apiVersion: promenroll.io/v1alpha1
kind: Policy
enroll:
- name: bad
  kinds: [Deployment]
  labels: {a: b}
  scrape: {port: 70000, path: stats, scheme: ftp}
- name: empty
  kinds: [Deployment]
  labels: {a: b}
  scrape: {}
- name: named
  kinds: [Deployment]
  labels: {a: b}
  scrape: {port: "not a name"}
`
	_, err := Parse("policy.yaml", []byte(doc), Options{})
	var perr *Error
	if !errors.As(err, &perr) {
		t.Fatalf("Parse() error = %v, want *policy.Error", err)
	}
	var got []string
	for _, p := range perr.Problems {
		got = append(got, p.Field+": "+p.Msg)
	}
	want := []string{
		`enroll[0].scrape.port: Invalid value: "70000": must be between 1 and 65535, inclusive`,
		`enroll[0].scrape.path: Invalid value: "stats": must start with "/"`,
		`enroll[0].scrape.scheme: Unsupported value: "ftp": supported values: "http", "https"`,
		`enroll[1].scrape: Required value: set port, path or scheme, or leave scrape out`,
		`enroll[2].scrape.port: Invalid value: "not a name": not a port number (1-65535) nor a port name: must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`,
	}
	if diff := testdiff.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestIsScrapeWarningTellsTheScrapeChecks: what ScrapeWarnings says is
// told apart from enrollment's own warnings (native enrollment gives the
// latter only).
func TestIsScrapeWarningTellsTheScrapeChecks(t *testing.T) {
	obj := Object{Kind: "Service", Annotations: map[string]string{PortAnnotation: "admin", PathAnnotation: "stats", SchemeAnnotation: "gopher"}}
	ws := ScrapeWarnings(obj, Decision{})
	if len(ws) != 3 {
		t.Fatalf("ScrapeWarnings = %q, want three", ws)
	}
	for _, w := range ws {
		if !IsScrapeWarning(w) {
			t.Errorf("IsScrapeWarning(%q) = false", w)
		}
	}
	for _, w := range []string{`metadata.labels team="a" kept; rule r wants "b"`, "label team skipped (rule r): {label:app}: the object has no label app", "[dry-run] would add metadata.labels a=b (rule r)"} {
		if IsScrapeWarning(w) {
			t.Errorf("IsScrapeWarning(%q) = true", w)
		}
	}
}
