package policy

import (
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const statusPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
mode: enforce
enroll:
- name: services
  kinds: [Service]
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}
  labels: {monitoring.promenroll.io/scrape: "true"}
- name: workloads
  kinds: [Deployment, StatefulSet, DaemonSet]
  labels: {monitoring.promenroll.io/scrape: "true"}
  podTemplateLabels: {monitoring.promenroll.io/scrape: "true"}
monitors:
  labels: {release: kube-prometheus-stack}
`

var scrapeLabel = map[string]string{"monitoring.promenroll.io/scrape": "true"}

func statusDeployment(name string, enrolled bool, ports ...Port) Object {
	o := Object{Kind: "Deployment", Namespace: "shop", Name: name, Labels: map[string]string{}, PodTemplatePath: "spec.template", HasPodTemplate: true,
		PodTemplateLabels: map[string]string{"app": name}, PodTemplateAnnotations: map[string]string{}, Ports: ports}
	if enrolled {
		o.Labels, o.PodTemplateLabels = scrapeLabel, map[string]string{"app": name, "monitoring.promenroll.io/scrape": "true"}
	}
	return o
}

// statusCluster: the enrollment PodMonitor and ServiceMonitor, loaded by
// monitoring/k8s, a user's monitor no Prometheus loads, and rules.
func statusCluster(states map[string]PrometheusState) StatusInput {
	release := map[string]string{"release": "kube-prometheus-stack"}
	all := &metav1.LabelSelector{MatchLabels: release}
	return StatusInput{
		Namespace: func(name string) Namespace {
			return Namespace{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}}
		},
		Monitors: []MonitorObject{
			{Kind: "PodMonitor", Namespace: "promenroll-system", Name: "promenroll-workloads", Labels: release, Selector: &metav1.LabelSelector{MatchLabels: scrapeLabel}, NamespaceSelector: monv1.NamespaceSelector{Any: true}},
			{Kind: "ServiceMonitor", Namespace: "promenroll-system", Name: "promenroll-services", Labels: release, Selector: &metav1.LabelSelector{MatchLabels: scrapeLabel}, NamespaceSelector: monv1.NamespaceSelector{Any: true}},
			{Kind: "ServiceMonitor", Namespace: "shop", Name: "legacy", Labels: map[string]string{"team": "shop"}, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "legacy"}}},
		},
		Prometheuses: []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", PodMonitor: all, PodMonitorNamespace: &metav1.LabelSelector{},
			ServiceMonitor: all, ServiceMonitorNamespace: &metav1.LabelSelector{}, Rule: all, RuleNamespace: &metav1.LabelSelector{}}},
		States: states,
	}
}

const workloadsPool = "podMonitor/promenroll-system/promenroll-workloads/0"

func podTarget(deploy, pod, health, lastError string) ScrapeTarget {
	return ScrapeTarget{Pool: workloadsPool, URL: "http://" + pod + ":8080/metrics", Health: health, LastError: lastError, Namespace: "shop", Pod: pod,
		ControllerKind: "ReplicaSet", ControllerName: deploy + "-5c8d7f9b4", TemplateHash: "5c8d7f9b4", Port: "metrics"}
}

func TestStatusOfWorkloads(t *testing.T) {
	p := mustParse(t, statusPolicy)
	metrics := Port{Name: "metrics", Number: 9090}
	web := Port{Name: "web", Number: 8080}
	states := map[string]PrometheusState{"monitoring/k8s": {
		Active: []ScrapeTarget{
			podTarget("checkout", "checkout-5c8d7f9b4-a", "up", ""),
			podTarget("checkout", "checkout-5c8d7f9b4-b", "up", ""),
			podTarget("payments", "payments-5c8d7f9b4-a", "down", "server returned HTTP status 500 Internal Server Error"),
		},
		Dropped: []ScrapeTarget{podTarget("frontend", "frontend-5c8d7f9b4-a", "", "")},
	}}
	annotated := statusDeployment("annotated", true, web)
	annotated.PodTemplateAnnotations = map[string]string{PortAnnotation: "metrcs"}
	for _, tc := range []struct {
		obj            Object
		states         map[string]PrometheusState
		outcome        Outcome
		state, message string
		props          map[string]string
	}{
		{obj: statusDeployment("checkout", true, metrics), outcome: OutcomePass, state: StateScraped, message: "2 targets up in Prometheus monitoring/k8s",
			props: map[string]string{"prometheus": "monitoring/k8s", "pool": workloadsPool, "up": "2", "targets": "2", "enrollment": "enrolled by rule workloads"}},
		{obj: statusDeployment("payments", true, metrics), outcome: OutcomeFail, state: StateTargetsDown,
			message: "1 of 1 targets down in Prometheus monitoring/k8s: http://payments-5c8d7f9b4-a:8080/metrics: server returned HTTP status 500 Internal Server Error",
			props:   map[string]string{"lastError": "server returned HTTP status 500 Internal Server Error"}},
		{obj: statusDeployment("frontend", true, web), outcome: OutcomeFail, state: StateNotScraped,
			message: "no target: Prometheus monitoring/k8s discovers 1 endpoint(s) of it in " + workloadsPool + " and drops them: no port is named metrics or http-metrics (declared: web): name the metrics port so, or set prometheus.io/port"},
		{obj: annotated, outcome: OutcomeFail, state: StateNotScraped, message: `no target: spec.template.metadata.annotations[prometheus.io/port]="metrcs": no container port is named or numbered metrcs (declared: web (8080))`},
		{obj: statusDeployment("idle", true, metrics), outcome: OutcomeFail, state: StateNotScraped,
			message: "no target: Prometheus monitoring/k8s (loading PodMonitor promenroll-system/promenroll-workloads) discovers no pod of it: are its pods running and ready?"},
		{obj: statusDeployment("old", false, metrics), outcome: OutcomeFail, state: StateNotEnrolled,
			message: `not scraped: not enrolled: it lacks metadata.labels[monitoring.promenroll.io/scrape]="true", spec.template.metadata.labels[monitoring.promenroll.io/scrape]="true", which rule workloads adds at creation`},
		{obj: statusDeployment("checkout", true, metrics), states: map[string]PrometheusState{"monitoring/k8s": {Err: "GET http://x/api/v1/targets: connection refused"}},
			outcome: OutcomeError, state: StateUnknown, message: "unknown: the Prometheus that loads its monitors did not answer: monitoring/k8s: GET http://x/api/v1/targets: connection refused"},
		{obj: statusDeployment("checkout", true, metrics), states: map[string]PrometheusState{}, outcome: OutcomeSkip, state: StateUnknown, message: "--prometheus-url"},
	} {
		t.Run(tc.obj.Name+"/"+string(tc.outcome), func(t *testing.T) {
			st := states
			if tc.states != nil {
				st = tc.states
			}
			in := statusCluster(st)
			in.Workloads = []Object{tc.obj}
			got := p.Status(in)
			if len(got) != 4 {
				t.Fatalf("%d results, want one for the workload and one per monitor", len(got))
			}
			r := got[0]
			if r.Subject != (Subject{Kind: "Deployment", Namespace: "shop", Name: tc.obj.Name}) || r.Check != CheckScraped {
				t.Errorf("subject %v, check %s", r.Subject, r.Check)
			}
			if r.Outcome != tc.outcome || r.State != tc.state || !strings.Contains(r.Message, tc.message) {
				t.Errorf("got %s %s %q\nwant %s %s, message containing %q", r.Outcome, r.State, r.Message, tc.outcome, tc.state, tc.message)
			}
			for k, v := range tc.props {
				if r.Properties[k] != v {
					t.Errorf("properties[%s] = %q, want %q", k, r.Properties[k], v)
				}
			}
		})
	}
}

func TestStatusOfServices(t *testing.T) {
	p := mustParse(t, statusPolicy)
	svc := Object{Kind: "Service", Namespace: "shop", Name: "checkout", Labels: map[string]string{"app.kubernetes.io/name": "checkout", "monitoring.promenroll.io/scrape": "true"},
		Annotations: map[string]string{}, Ports: []Port{{Name: "http-metrics", Number: 80}}}
	endpoint := podTarget("checkout", "checkout-5c8d7f9b4-a", "", "")
	endpoint.Pool, endpoint.Service, endpoint.Port = "serviceMonitor/promenroll-system/promenroll-services/0", "checkout", "http-metrics"
	asPod := podTarget("checkout", "checkout-5c8d7f9b4-a", "up", "")
	scraped := endpoint
	scraped.Health, scraped.URL = "up", "http://10.0.0.1:80/metrics"

	in := statusCluster(map[string]PrometheusState{"monitoring/k8s": {Active: []ScrapeTarget{asPod}, Dropped: []ScrapeTarget{endpoint}}})
	in.Services = []Object{svc}
	r := p.Status(in)[0]
	if r.Outcome != OutcomeSkip || !strings.Contains(r.Message, "the pod wins") {
		t.Errorf("pod wins: %s %q", r.Outcome, r.Message)
	}

	in.States = map[string]PrometheusState{"monitoring/k8s": {Active: []ScrapeTarget{scraped, scraped}}}
	r = p.Status(in)[0]
	if r.Outcome != OutcomePass || r.Message != "1 targets up in Prometheus monitoring/k8s" {
		t.Errorf("a Service's target, listed twice: %s %q (a duplicate counts once)", r.Outcome, r.Message)
	}

	optedOut := svc
	optedOut.Labels = map[string]string{"app.kubernetes.io/name": "checkout", OptOutLabel: "false"}
	in.Services = []Object{optedOut}
	in.States = map[string]PrometheusState{"monitoring/k8s": {}}
	r = p.Status(in)[0]
	if r.Outcome != OutcomeSkip || r.State != StateNotEnrolled || !strings.Contains(r.Message, "opted out") {
		t.Errorf("opted out: %s %s %q", r.Outcome, r.State, r.Message)
	}
}

func TestStatusOfMonitors(t *testing.T) {
	p := mustParse(t, statusPolicy)
	in := statusCluster(map[string]PrometheusState{"monitoring/k8s": {
		Active:  []ScrapeTarget{podTarget("checkout", "checkout-5c8d7f9b4-a", "up", ""), podTarget("payments", "payments-5c8d7f9b4-a", "down", "connection refused")},
		Dropped: []ScrapeTarget{{Pool: "serviceMonitor/promenroll-system/promenroll-services/0", Namespace: "shop", Service: "db"}},
	}})
	got := p.Status(in)
	want := []struct {
		outcome Outcome
		message string
	}{
		{OutcomeFail, "loaded by monitoring/k8s: 1 of 2 targets down: http://payments-5c8d7f9b4-a:8080/metrics: connection refused"},
		{OutcomeWarn, "loaded by monitoring/k8s, but yields no target: 1 discovered endpoints, all dropped by its relabeling"},
		{OutcomeFail, "loaded by no Prometheus: Prometheus monitoring/k8s selects ServiceMonitors with release=kube-prometheus-stack; this one has no label release"},
	}
	for i, w := range want {
		if got[i].Check != CheckMonitorLoaded || got[i].Outcome != w.outcome || got[i].Message != w.message {
			t.Errorf("%v: %s %q\nwant %s %q", got[i].Subject, got[i].Outcome, got[i].Message, w.outcome, w.message)
		}
	}
}

func TestStatusOfRules(t *testing.T) {
	p := mustParse(t, statusPolicy)
	release := map[string]string{"release": "kube-prometheus-stack"}
	file := func(name, uid string) string {
		return "/etc/prometheus/rules/prometheus-k8s-rulefiles-0/shop-" + name + "-" + uid + ".yaml"
	}
	in := statusCluster(map[string]PrometheusState{"monitoring/k8s": {Groups: []RuleGroupStatus{
		{File: file("good", "u1"), Name: "g", Rules: []RuleHealth{{Name: "a", Health: "ok"}, {Name: "b", Health: "unknown"}}},
		{File: file("bad", "u2"), Name: "g", Rules: []RuleHealth{{Name: "sum", Health: "err", LastError: "vector cannot contain metrics with the same labelset"}}},
		// The same name with another UID: a rule file of an earlier object.
		{File: file("pending", "old"), Name: "g", Rules: []RuleHealth{{Name: "x", Health: "ok"}}},
	}}})
	in.Monitors = nil
	in.Rules = []RuleObject{
		{Namespace: "shop", Name: "good", UID: "u1", Labels: release, Rules: 2},
		{Namespace: "shop", Name: "bad", UID: "u2", Labels: release, Rules: 1},
		{Namespace: "shop", Name: "pending", UID: "u3", Labels: release, Rules: 1},
		{Namespace: "shop", Name: "unlabelled", UID: "u4", Rules: 1},
	}
	got := p.Status(in)
	want := []struct {
		outcome Outcome
		state   string
		message string
	}{
		{OutcomePass, StateRulesEvaluating, "loaded by monitoring/k8s: 2 rules, all evaluating"},
		{OutcomeFail, StateRulesFailing, "1 of 1 rules fail at every evaluation: g/sum in monitoring/k8s: vector cannot contain metrics with the same labelset"},
		{OutcomeWarn, StateNotLoaded, "selected by monitoring/k8s, but not loaded by monitoring/k8s"},
		{OutcomeFail, StateNotLoaded, "loaded by no Prometheus: Prometheus monitoring/k8s selects PrometheusRules with release=kube-prometheus-stack"},
	}
	for i, w := range want {
		if got[i].Check != CheckRulesEvaluate || got[i].Outcome != w.outcome || got[i].State != w.state || !strings.HasPrefix(got[i].Message, w.message) {
			t.Errorf("%v: %s %s %q\nwant %s %s %q", got[i].Subject, got[i].Outcome, got[i].State, got[i].Message, w.outcome, w.state, w.message)
		}
	}
}

// The operator applies a monitor's selector as relabeling: a pod no
// monitor selects is discovered and dropped by every monitor that reaches
// its namespace. That drop says nothing of it.
func TestAnUnselectedObjectDroppedByASelectorIsNotBroken(t *testing.T) {
	p := mustParse(t, statusPolicy+`
excludeNamespaces: []
`)
	in := statusCluster(map[string]PrometheusState{"monitoring/k8s": {Dropped: []ScrapeTarget{podTarget("legacy", "legacy-5c8d7f9b4-a", "", ""),
		{Pool: "serviceMonitor/promenroll-system/promenroll-services/0", Namespace: "default", Service: "kubernetes"}}}})
	legacy := statusDeployment("legacy", false, Port{Name: "metrics", Number: 9090})
	legacy.Labels = map[string]string{OptOutLabel: "false"}
	in.Workloads = []Object{legacy}
	in.Services = []Object{{Kind: "Service", Namespace: "default", Name: "kubernetes", Labels: map[string]string{"component": "apiserver"}, Ports: []Port{{Name: "https", Number: 443}}}}
	got := p.Status(in)
	for _, r := range got[:2] {
		if r.Outcome != OutcomeSkip || r.State != StateNotEnrolled {
			t.Errorf("%v: %s %s %q, want skip: nothing asked for it to be scraped", r.Subject, r.Outcome, r.State, r.Message)
		}
	}
}

// A result names the Prometheus that answered, and notes the loaders that
// could not be asked or did not answer.
func TestStatusNotesLoadersThatWereNotAsked(t *testing.T) {
	p := mustParse(t, statusPolicy)
	all := &metav1.LabelSelector{}
	in := statusCluster(map[string]PrometheusState{"monitoring/k8s": {}, "other/down": {Err: "connection refused"}})
	in.Prometheuses = append(in.Prometheuses,
		PrometheusSelectors{Namespace: "other", Name: "down", Rule: all, RuleNamespace: all},
		PrometheusSelectors{Namespace: "other", Name: "unknown", Rule: all, RuleNamespace: all})
	in.Monitors = nil
	in.Rules = []RuleObject{{Namespace: "shop", Name: "empty", UID: "u", Labels: map[string]string{"release": "kube-prometheus-stack"}}}
	r := p.Status(in)[0]
	want := "loaded by monitoring/k8s: 0 rules, all evaluating; also loaded by other/down: connection refused (did not answer); also loaded by other/unknown (not asked: no URL)"
	if r.Outcome != OutcomePass || r.Message != want {
		t.Errorf("got %s %q\nwant pass %q", r.Outcome, r.Message, want)
	}
}
