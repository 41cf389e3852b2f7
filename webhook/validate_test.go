package webhook

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/internal/testdiff"
	"github.com/promenroll/promenroll/policy"
)

func ruleJSON(rules string) string {
	return `{"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","metadata":{"name":"api-rules","namespace":"shop"},"spec":{"groups":[{"name":"api","rules":[` + rules + `]}]}}`
}

const (
	goodAlert = `{"alert":"APIDown","expr":"up{job=\"api\"} == 0","for":"5m","labels":{"severity":"critical"},"annotations":{"summary":"{{ $labels.job }} is down"}}`
	badExpr   = `{"alert":"APIErrors","expr":"sum(rate(http_requests_total[5m])","labels":{"severity":"warning"}}`
	noLabel   = `{"alert":"APISlow","expr":"histogram_quantile(0.99, rate(x[5m])) > 1"}`
)

func TestValidateDeniesWithEveryProblemInTheMessage(t *testing.T) {
	s := newServer(t, testPolicy)
	r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", ruleJSON(badExpr+","+noLabel), nil))
	if r.Allowed {
		t.Fatal("a broken PrometheusRule was allowed")
	}
	if r.Result.Code != http.StatusUnprocessableEntity || r.Result.Reason != metav1.StatusReasonInvalid {
		t.Errorf("code %d reason %s, want 422 Invalid", r.Result.Code, r.Result.Reason)
	}
	for _, want := range []string{
		"spec.groups[0].rules[0].expr", "unclosed left parenthesis",
		"spec.groups[0].rules[1].labels[severity]", "needs label severity",
	} {
		if !strings.Contains(r.Result.Message, want) {
			t.Errorf("message does not name %q: %s", want, r.Result.Message)
		}
	}
	var fields []string
	for _, c := range r.Result.Details.Causes {
		fields = append(fields, c.Field)
	}
	if diff := testdiff.Diff([]string{"spec.groups[0].rules[0].expr", "spec.groups[0].rules[1].labels[severity]"}, fields); diff != "" {
		t.Errorf("causes (-want +got):\n%s", diff)
	}
}

func TestValidateCutsLongProblemListsInTheMessage(t *testing.T) {
	s := newServer(t, testPolicy)
	rules := make([]string, 12)
	for i := range rules {
		rules[i] = badExpr
	}
	r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", ruleJSON(strings.Join(rules, ",")), nil))
	if !strings.HasSuffix(r.Result.Message, "; and 4 more") {
		t.Errorf("message does not end with the count of unlisted problems: %s", r.Result.Message)
	}
	if len(r.Result.Details.Causes) != 12 {
		t.Errorf("%d causes, want all 12", len(r.Result.Details.Causes))
	}
}

func TestValidateAllowsValidRules(t *testing.T) {
	s := newServer(t, testPolicy)
	r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Update, "shop", ruleJSON(goodAlert), ruleJSON(goodAlert)))
	if !r.Allowed || len(r.Warnings) != 0 {
		t.Fatalf("allowed=%v warnings=%q result=%v", r.Allowed, r.Warnings, r.Result)
	}
}

func TestValidateDryRunAllowsAndWarns(t *testing.T) {
	s := newServer(t, testPolicy)
	r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "sandbox", ruleJSON(badExpr), nil))
	if !r.Allowed {
		t.Fatalf("dry-run denied: %v", r.Result)
	}
	if len(r.Warnings) < 2 || !strings.HasPrefix(r.Warnings[0], "[dry-run] would deny PrometheusRule api-rules") || !strings.Contains(r.Warnings[1], "spec.groups[0].rules[0].expr") {
		t.Errorf("warnings = %q", r.Warnings)
	}
	if r.AuditAnnotations["dry-run"] == "" {
		t.Error("no dry-run audit annotation")
	}
}

func TestValidateLintWarningsAreAdmissionWarnings(t *testing.T) {
	s := newServer(t, testPolicy)
	rec := `{"record":"http_requests_rate5m","expr":"sum(rate(http_requests_total[5m]))"}`
	r := s.admit(t, ValidatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", ruleJSON(rec), nil))
	if !r.Allowed || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "level:metric:operations") {
		t.Fatalf("allowed=%v warnings=%q", r.Allowed, r.Warnings)
	}
}

func TestMutatePrometheusRuleCoercesNonStringLabels(t *testing.T) {
	s := newServer(t, testPolicy)
	obj := ruleJSON(`{"alert":"A","expr":"up == 0","labels":{"severity":1,"page":true,"team":"x"},"annotations":{"priority":2.5}}`)
	r := s.admit(t, MutatePath, review(prometheusRuleGVK, admissionv1.Create, "shop", obj, nil))
	got := applyPatch(t, obj, r)
	rule := got["spec"].(map[string]any)["groups"].([]any)[0].(map[string]any)["rules"].([]any)[0].(map[string]any)
	if diff := testdiff.Diff(map[string]any{"severity": "1", "page": "true", "team": "x"}, rule["labels"]); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if diff := testdiff.Diff(map[string]any{"priority": "2.5"}, rule["annotations"]); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	if labelsAt(t, got, "metadata", "labels")["release"] != "kube-prometheus-stack" {
		t.Errorf("monitors.labels not added: %s", r.Patch)
	}
}

func TestMutateServiceMonitorGetsSelectorLabels(t *testing.T) {
	s := newServer(t, testPolicy)
	obj := `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"web","labels":{"app":"web"}},"spec":{"endpoints":[{"port":"http"}],"selector":{"matchLabels":{"app":"web"}}}}`
	r := s.admit(t, MutatePath, review(serviceMonitorGVK, admissionv1.Create, "monitors", obj, nil))
	if want := `[{"op":"add","path":"/metadata/labels/release","value":"kube-prometheus-stack"}]`; string(r.Patch) != want {
		t.Errorf("patch = %s, want %s", r.Patch, want)
	}
}

func TestBadInput(t *testing.T) {
	s := newServer(t, testPolicy)
	podGVK := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	tests := []struct {
		name        string
		path        string
		contentType string
		body        []byte
		wantCode    int32 // 0: allowed
		wantMsg     string
	}{
		{"malformed JSON", MutatePath, "application/json", []byte(`{"request":`), 400, "unexpected end of JSON input"},
		{"wrong content type", MutatePath, "text/plain", review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil), 400, "contentType=text/plain, expected application/json"},
		{"a body that is not an AdmissionReview", MutatePath, "application/json", []byte(`{"hello":"world"}`), 400, "not an AdmissionReview request"},
		{"a kind /mutate does not handle", MutatePath, "application/json", review(podGVK, admissionv1.Create, "shop", `{"metadata":{"name":"p"}}`, nil), 0, "kind v1/Pod is not handled by /mutate"},
		{"a kind /validate does not handle", ValidatePath, "application/json", review(deploymentGVK, admissionv1.Create, "shop", deploymentJSON, nil), 0, "kind apps/v1/Deployment is not handled by /validate"},
		{"a missing object on /mutate", MutatePath, "application/json", review(deploymentGVK, admissionv1.Create, "shop", nil, nil), 400, "the admission request has no object"},
		{"a missing object on /validate", ValidatePath, "application/json", review(prometheusRuleGVK, admissionv1.Create, "shop", nil, nil), 400, "the admission request has no object"},
		{"an object that is not JSON", MutatePath, "application/json", review(deploymentGVK, admissionv1.Create, "shop", []byte(`"just a string"`), nil), 400, "decode object"},
		{"a PrometheusRule of the wrong shape", ValidatePath, "application/json", review(prometheusRuleGVK, admissionv1.Create, "shop", `{"spec":{"groups":"none"}}`, nil), 400, "cannot be decoded"},
		{"deeply nested JSON", MutatePath, "application/json", rawReview(`{"metadata":{"name":"x"},"spec":` + strings.Repeat(`{"a":`, 20000) + `1` + strings.Repeat(`}`, 20000) + `}`), 400, "exceeded max depth"},
		{"an unknown namespace", MutatePath, "application/json", review(deploymentGVK, admissionv1.Create, "ghost", deploymentJSON, nil), 500, "could not read namespace ghost"},
		{"a DELETE", MutatePath, "application/json", review(deploymentGVK, admissionv1.Delete, "shop", nil, deploymentJSON), 0, "operation DELETE is not handled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, status := s.post(t, tt.path, tt.contentType, tt.body)
			if status != http.StatusOK {
				t.Errorf("HTTP status %d, want 200 (the AdmissionReview carries the error)", status)
			}
			if len(r.Patch) != 0 {
				t.Errorf("bad input produced a patch: %s", r.Patch)
			}
			if tt.wantCode == 0 {
				if !r.Allowed {
					t.Errorf("denied: %v", r.Result)
				}
			} else if r.Allowed || r.Result == nil || r.Result.Code != tt.wantCode {
				t.Errorf("allowed=%v result=%+v, want code %d", r.Allowed, r.Result, tt.wantCode)
			}
			if r.Result == nil || !strings.Contains(r.Result.Message, tt.wantMsg) {
				t.Errorf("message %+v does not contain %q", r.Result, tt.wantMsg)
			}
		})
	}
}

func TestOversizedBodyIsRefused(t *testing.T) {
	s := newServer(t, testPolicy)
	big := `{"metadata":{"name":"x","annotations":{"a":"` + strings.Repeat("x", 8<<20) + `"}}}`
	r, _ := s.post(t, MutatePath, "application/json", review(deploymentGVK, admissionv1.Create, "shop", big, nil))
	if r.Allowed || r.Result.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("allowed=%v result=%+v, want 413", r.Allowed, r.Result)
	}
}

// rawReview builds a Deployment CREATE review around obj as text, for
// objects json.Marshal refuses to produce.
func rawReview(obj string) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},` +
		`"resource":{"group":"apps","version":"v1","resource":"deployments"},"operation":"CREATE","namespace":"shop","userInfo":{},"object":` + obj + `}}`)
}

// prometheusesFunc adapts a function to clusterstate.PrometheusLister.
type prometheusesFunc func() []policy.PrometheusSelectors

func (f prometheusesFunc) Prometheuses(context.Context) ([]policy.PrometheusSelectors, error) {
	return f(), nil
}

func TestMutateWarnsWhenNoPrometheusWillLoadAMonitor(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policyOptions())
	if err != nil {
		t.Fatal(err)
	}
	onlyTeamA := []policy.PrometheusSelectors{{Namespace: "team-a", Name: "team", ServiceMonitor: &metav1.LabelSelector{}}}
	kps := []policy.PrometheusSelectors{{Namespace: "monitoring", Name: "kps",
		ServiceMonitor: &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kube-prometheus-stack"}}, ServiceMonitorNamespace: &metav1.LabelSelector{}}}
	obj := `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"web"},"spec":{"endpoints":[{"port":"http"}],"selector":{}}}`
	for _, tt := range []struct {
		name  string
		proms []policy.PrometheusSelectors
		warn  bool
	}{
		{"a Prometheus in another namespace with a null namespace selector: warned", onlyTeamA, true},
		{"kube-prometheus-stack selecting the label promenroll adds: not warned", kps, false},
		{"no Prometheus objects at all: not warned", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &Mutator{Policies: policystore.Static(p), Namespaces: testNamespaces, Metrics: NewMetrics(nil),
				Prometheuses: prometheusesFunc(func() []policy.PrometheusSelectors { return tt.proms })}
			mux := http.NewServeMux()
			mux.Handle(MutatePath, Endpoint("mutate", m, nil))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			s := &server{Server: srv}
			r := s.admit(t, MutatePath, review(serviceMonitorGVK, admissionv1.Create, "monitors", obj, nil))
			warned := slices.ContainsFunc(r.Warnings, func(w string) bool {
				return strings.HasPrefix(w, "no Prometheus will load this ServiceMonitor: Prometheus ")
			})
			if warned != tt.warn {
				t.Errorf("warned = %v, want %v: %q", warned, tt.warn, r.Warnings)
			}
		})
	}
}

func TestValidateMonitors(t *testing.T) {
	s := newServer(t, testPolicy)
	gvk := func(version, kind string) metav1.GroupVersionKind {
		return metav1.GroupVersionKind{Group: "monitoring.coreos.com", Version: version, Kind: kind}
	}
	tests := []struct {
		name       string
		gvk        metav1.GroupVersionKind
		obj        string
		wantCauses []string
	}{{
		name:       "a ServiceMonitor with a broken relabel regex is refused with the field path",
		gvk:        gvk("v1", "ServiceMonitor"),
		obj:        `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"shop","namespace":"shop"},"spec":{"selector":{},"endpoints":[{"port":"web","relabelings":[{"action":"keep","regex":"([a-z"}]}]}}`,
		wantCauses: []string{"spec.endpoints[0].relabelings[0].regex"},
	}, {
		name:       "a PodMonitor whose scrapeTimeout exceeds its interval is refused",
		gvk:        gvk("v1", "PodMonitor"),
		obj:        `{"apiVersion":"monitoring.coreos.com/v1","kind":"PodMonitor","metadata":{"name":"shop","namespace":"shop"},"spec":{"selector":{},"podMetricsEndpoints":[{"port":"web","interval":"10s","scrapeTimeout":"20s"}]}}`,
		wantCauses: []string{"spec.podMetricsEndpoints[0].scrapeTimeout"},
	}, {
		name:       "a Probe without targets is refused",
		gvk:        gvk("v1", "Probe"),
		obj:        `{"apiVersion":"monitoring.coreos.com/v1","kind":"Probe","metadata":{"name":"shop","namespace":"shop"},"spec":{"prober":{"url":"bb:9115"}}}`,
		wantCauses: []string{"spec.targets"},
	}, {
		name:       "a ScrapeConfig (v1alpha1) with an unknown relabel action is refused",
		gvk:        gvk("v1alpha1", "ScrapeConfig"),
		obj:        `{"apiVersion":"monitoring.coreos.com/v1alpha1","kind":"ScrapeConfig","metadata":{"name":"shop","namespace":"shop"},"spec":{"relabelings":[{"action":"delete"}]}}`,
		wantCauses: []string{"spec.relabelings[0].action"},
	}, {
		name: "a valid ServiceMonitor is admitted",
		gvk:  gvk("v1", "ServiceMonitor"),
		obj:  `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"shop","namespace":"shop"},"spec":{"selector":{},"endpoints":[{"port":"web","interval":"30s","scrapeTimeout":"10s"}]}}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.admit(t, ValidatePath, review(tt.gvk, admissionv1.Create, "shop", tt.obj, nil))
			if len(tt.wantCauses) == 0 {
				if !r.Allowed {
					t.Fatalf("denied: %v", r.Result)
				}
				return
			}
			if r.Allowed || r.Result.Code != http.StatusUnprocessableEntity {
				t.Fatalf("allowed %v, result %v: want a 422 denial", r.Allowed, r.Result)
			}
			var fields []string
			for _, c := range r.Result.Details.Causes {
				fields = append(fields, c.Field)
			}
			if diff := testdiff.Diff(tt.wantCauses, fields); diff != "" {
				t.Errorf("causes (-want +got):\n%s", diff)
			}
			if r.Result.Details.Kind != tt.gvk.Kind || !strings.HasPrefix(r.Result.Message, tt.gvk.Kind+` "shop" is invalid: 1 problem(s): `+tt.wantCauses[0]) {
				t.Errorf("details kind %s, message %q", r.Result.Details.Kind, r.Result.Message)
			}
		})
	}
}

func TestUnselectedDenyRefusesAMonitorNoPrometheusLoads(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(`apiVersion: promenroll.io/v1alpha1
kind: Policy
monitors:
  labels: {release: kube-prometheus-stack}
  unselected: deny
`), policyOptions())
	if err != nil {
		t.Fatal(err)
	}
	release := &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kube-prometheus-stack"}}
	proms := prometheusesFunc(func() []policy.PrometheusSelectors {
		return []policy.PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", ServiceMonitor: release, ServiceMonitorNamespace: &metav1.LabelSelector{}}}
	})
	v := &Validator{Policies: policystore.Static(p), Namespaces: testNamespaces, Prometheuses: proms, Metrics: NewMetrics(nil)}
	mux := http.NewServeMux()
	mux.Handle(ValidatePath, Endpoint("validate", v, nil))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := &server{Server: srv}
	obj := func(release string) string {
		return `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"shop","namespace":"shop","labels":{"release":"` + release + `"}},"spec":{"selector":{},"endpoints":[{"port":"web"}]}}`
	}
	r := s.admit(t, ValidatePath, review(serviceMonitorGVK, admissionv1.Create, "shop", obj("prom"), nil))
	if r.Allowed || len(r.Result.Details.Causes) != 1 || r.Result.Details.Causes[0].Field != "metadata.labels" ||
		!strings.Contains(r.Result.Message, "Prometheus monitoring/k8s selects ServiceMonitors with release=kube-prometheus-stack; this one has release=prom") {
		t.Errorf("want a denial naming the difference at metadata.labels, got allowed=%v %v", r.Allowed, r.Result)
	}
	if r := s.admit(t, ValidatePath, review(serviceMonitorGVK, admissionv1.Create, "shop", obj("kube-prometheus-stack"), nil)); !r.Allowed {
		t.Errorf("a selected ServiceMonitor was denied: %v", r.Result)
	}
}

// failingPrometheuses is a Prometheus lister whose cache cannot answer.
type failingPrometheuses struct{}

func (failingPrometheuses) Prometheuses(context.Context) ([]policy.PrometheusSelectors, error) {
	return nil, errors.New("the Prometheus informer has not synced")
}

// TestUnselectedDenyFailsWhenThePrometheusesCannotBeRead: with
// monitors.unselected: deny, an unreadable Prometheus list is an error
// (the API server's failurePolicy applies), counted, never a silent allow;
// at warn the gate still judges what it can, and /mutate labels the
// monitor and says what it skipped.
func TestUnselectedDenyFailsWhenThePrometheusesCannotBeRead(t *testing.T) {
	obj := `{"apiVersion":"monitoring.coreos.com/v1","kind":"ServiceMonitor","metadata":{"name":"shop","namespace":"shop"},"spec":{"selector":{},"endpoints":[{"port":"web"}]}}`
	for _, level := range []string{"deny", "warn"} {
		t.Run("unselected "+level, func(t *testing.T) {
			p, err := policy.Parse("policy.yaml", []byte("apiVersion: promenroll.io/v1alpha1\nkind: Policy\nmonitors:\n  labels: {release: kps}\n  unselected: "+level+"\n"), policyOptions())
			if err != nil {
				t.Fatal(err)
			}
			metrics := NewMetrics(nil)
			mux := http.NewServeMux()
			mux.Handle(ValidatePath, Endpoint("validate", &Validator{Policies: policystore.Static(p), Namespaces: testNamespaces, Prometheuses: failingPrometheuses{}, Metrics: metrics}, nil))
			mux.Handle(MutatePath, Endpoint("mutate", &Mutator{Policies: policystore.Static(p), Namespaces: testNamespaces, Prometheuses: failingPrometheuses{}, Metrics: metrics}, nil))
			srv := httptest.NewServer(mux)
			defer srv.Close()
			s := &server{Server: srv}
			r := s.admit(t, ValidatePath, review(serviceMonitorGVK, admissionv1.Create, "shop", obj, nil))
			switch level {
			case "deny":
				if r.Allowed || r.Result == nil || r.Result.Code != http.StatusInternalServerError || !strings.Contains(r.Result.Message, "monitors.unselected: deny") {
					t.Errorf("want an error naming monitors.unselected: deny, got allowed=%v %v", r.Allowed, r.Result)
				}
			case "warn":
				if !r.Allowed {
					t.Errorf("at warn an unreadable Prometheus list refused the monitor: %v", r.Result)
				}
			}
			m := s.admit(t, MutatePath, review(serviceMonitorGVK, admissionv1.Create, "shop", obj, nil))
			if !m.Allowed || !strings.Contains(string(m.Patch), `"release":"kps"`) || !slices.ContainsFunc(m.Warnings, func(w string) bool { return strings.Contains(w, "could not read the cluster's Prometheus objects") }) {
				t.Errorf("/mutate: allowed=%v patch=%s warnings=%q", m.Allowed, m.Patch, m.Warnings)
			}
			if got := testutil.ToFloat64(metrics.PrometheusErrors); got != 2 {
				t.Errorf("promenroll_prometheus_lookup_errors_total = %v, want 2", got)
			}
		})
	}
}

// TestMutateProbesAndScrapeConfigsAreSelectedLikeMonitors: Probes and
// ScrapeConfigs get monitors.labels and are judged against the
// Prometheus' probeSelector and scrapeConfigSelector.
func TestMutateProbesAndScrapeConfigsAreSelectedLikeMonitors(t *testing.T) {
	p, err := policy.Parse("policy.yaml", []byte(testPolicy), policyOptions())
	if err != nil {
		t.Fatal(err)
	}
	release := &metav1.LabelSelector{MatchLabels: map[string]string{"release": "kube-prometheus-stack"}}
	proms := []policy.PrometheusSelectors{{Namespace: "monitoring", Name: "kps",
		Probe: release, ProbeNamespace: &metav1.LabelSelector{}, ScrapeConfig: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}}}
	m := &Mutator{Policies: policystore.Static(p), Namespaces: testNamespaces, Metrics: NewMetrics(nil),
		Prometheuses: prometheusesFunc(func() []policy.PrometheusSelectors { return proms })}
	mux := http.NewServeMux()
	mux.Handle(MutatePath, Endpoint("mutate", m, nil))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	s := &server{Server: srv}
	probe := metav1.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: "Probe"}
	r := s.admit(t, MutatePath, review(probe, admissionv1.Create, "monitors", `{"apiVersion":"monitoring.coreos.com/v1","kind":"Probe","metadata":{"name":"site"},"spec":{}}`, nil))
	if want := `[{"op":"add","path":"/metadata/labels","value":{"release":"kube-prometheus-stack"}}]`; string(r.Patch) != want {
		t.Errorf("Probe patch = %s, want %s", r.Patch, want)
	}
	if len(r.Warnings) > 0 {
		t.Errorf("a Probe the Prometheus selects once labelled was warned: %q", r.Warnings)
	}
	sc := metav1.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1alpha1", Kind: "ScrapeConfig"}
	r = s.admit(t, MutatePath, review(sc, admissionv1.Create, "monitors", `{"apiVersion":"monitoring.coreos.com/v1alpha1","kind":"ScrapeConfig","metadata":{"name":"static"},"spec":{}}`, nil))
	if !slices.ContainsFunc(r.Warnings, func(w string) bool {
		return strings.HasPrefix(w, "no Prometheus will load this ScrapeConfig: Prometheus monitoring/kps") && strings.Contains(w, "scrapeConfig")
	}) {
		t.Errorf("a ScrapeConfig no Prometheus selects: warnings %q", r.Warnings)
	}
}
