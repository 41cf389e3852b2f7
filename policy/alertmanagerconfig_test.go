package policy

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	monv1beta1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

var gkAlertmanagerConfig = schema.GroupKind{Group: groupMonitoring, Kind: "AlertmanagerConfig"}

// gateAMC runs the AlertmanagerConfig gate on a testdata file, through the
// gate table as /validate and check do.
func gateAMC(tb testing.TB, p *Policy, data []byte, ns Namespace) GateResult {
	tb.Helper()
	raw, err := yaml.YAMLToJSON(data)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := p.Gate(gkAlertmanagerConfig, raw, ns, ClusterState{})
	if err != nil {
		tb.Fatal(err)
	}
	return res
}

// TestAlertmanagerConfigGateNamesEveryProblem: every bad testdata
// AlertmanagerConfig, of both versions, is denied with each of its problems
// at its field path; every good one is admitted.
func TestAlertmanagerConfigGateNamesEveryProblem(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	cases := gateCases(t, "testdata/alertmanagerconfigs")
	if len(cases) < 30 {
		t.Fatalf("%d testdata AlertmanagerConfigs, want at least 30", len(cases))
	}
	// Every receiver type of the operator's API, in both versions, appears
	// in a good file and (v1alpha1, the served version) in a bad one.
	for _, version := range []struct {
		prefix string
		typ    reflect.Type
	}{{"v1alpha1-", reflect.TypeFor[monv1alpha1.Receiver]()}, {"v1beta1-", reflect.TypeFor[monv1beta1.Receiver]()}} {
		for i := range version.typ.NumField() {
			key, _, _ := strings.Cut(version.typ.Field(i).Tag.Get("json"), ",")
			if !strings.HasSuffix(key, "Configs") {
				continue
			}
			var good, bad bool
			uses := regexp.MustCompile(`(?m)^[ -]*` + key + `:`)
			for _, c := range cases {
				if strings.HasPrefix(filepath.Base(c.path), version.prefix) && uses.Match(c.data) {
					good, bad = good || c.good, bad || !c.good
				}
			}
			if !good || !bad && version.prefix == "v1alpha1-" {
				t.Errorf("%s receivers: %s in a good file %v, in a bad file %v", version.prefix, key, good, bad)
			}
		}
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.path), func(t *testing.T) {
			res := gateAMC(t, p, c.data, Namespace{Name: "shop"})
			if res.Name != "shop" || res.Namespace != "shop" {
				t.Errorf("the result names %s/%s, want shop/shop", res.Namespace, res.Name)
			}
			c.judge(t, res.Report.Denials())
		})
	}
}

func TestAlertmanagerConfigGateModes(t *testing.T) {
	data, err := os.ReadFile("testdata/alertmanagerconfigs/v1beta1-route-unknown-receiver.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, policy string
		ns           Namespace
		want         Mode
	}{
		{"policy default", minimalPolicy, Namespace{Name: "shop"}, ModeEnforce},
		{"section", minimalPolicy + "alertmanagerConfigs: {mode: dry-run}\n", Namespace{Name: "shop"}, ModeDryRun},
		{"policy mode inherited", strings.Replace(minimalPolicy, "kind: Policy", "kind: Policy\nmode: dry-run", 1), Namespace{Name: "shop"}, ModeDryRun},
		{"namespace annotation", minimalPolicy, Namespace{Name: "shop", Annotations: map[string]string{ModeAnnotation: "dry-run"}}, ModeDryRun},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := gateAMC(t, mustParse(t, tc.policy), data, tc.ns).Report
			if rep.Mode != tc.want || len(rep.Denials()) != 1 {
				t.Errorf("mode %s with %d findings, want %s with the one", rep.Mode, len(rep.Denials()), tc.want)
			}
		})
	}
	if _, err := Parse("p.yaml", []byte(minimalPolicy+"alertmanagerConfigs: {mode: audit}\n"), Options{}); err == nil || !strings.Contains(err.Error(), "alertmanagerConfigs.mode") {
		t.Errorf("an unknown mode: %v, want an error at alertmanagerConfigs.mode", err)
	}
}

func TestAlertmanagerConfigGateRefusesAnUnknownVersion(t *testing.T) {
	_, err := mustParse(t, minimalPolicy).Gate(gkAlertmanagerConfig, []byte(`{"apiVersion":"monitoring.coreos.com/v2","kind":"AlertmanagerConfig"}`), Namespace{}, ClusterState{})
	if err == nil || !strings.Contains(err.Error(), "v1alpha1") {
		t.Errorf("err = %v, want it to name the versions it knows", err)
	}
}

// stricterAMC lists the testdata AlertmanagerConfigs promenroll denies and
// the operator's admission webhook admits, with the reason.
var stricterAMC = map[string]string{
	"v1beta1-bad-matcher-regex.bad.yaml":  "the operator writes the matcher into the generated configuration, which Alertmanager then refuses to load",
	"v1alpha1-bad-matcher-regex.bad.yaml": "the operator writes the matcher into the generated configuration, which Alertmanager then refuses to load",
}

// TestAlertmanagerConfigVerdictsAgreeWithTheOperator: for every testdata
// AlertmanagerConfig, promenroll denies exactly what prometheus-operator's
// own admission webhook (bin/operator-verdicts, built from the operator
// module at the version the e2e tests run) refuses, but for the listed
// stricter cases; each denial's first message is the operator's.
func TestAlertmanagerConfigVerdictsAgreeWithTheOperator(t *testing.T) {
	operator := operatorVerdicts(t, "testdata/alertmanagerconfigs")
	p := mustParse(t, minimalPolicy)
	cases := gateCases(t, "testdata/alertmanagerconfigs")
	if len(operator) != len(cases) {
		t.Fatalf("the operator judged %d files, promenroll has %d", len(operator), len(cases))
	}
	for _, c := range cases {
		name := filepath.Base(c.path)
		opReason, ok := operator[name]
		if !ok {
			t.Errorf("%s: no verdict from the operator", name)
			continue
		}
		denials := gateAMC(t, p, c.data, Namespace{Name: "shop"}).Report.Denials()
		why, stricter := stricterAMC[name]
		switch {
		case stricter && len(denials) > 0 && opReason == "":
		case stricter:
			t.Errorf("%s is listed as stricter than the operator (%s), but promenroll denied %d, operator said %q: update the list", name, why, len(denials), opReason)
		case (len(denials) > 0) != (opReason != ""):
			t.Errorf("%s: promenroll denied %v, the operator's webhook said %q", name, denials.ToAggregate(), opReason)
		case opReason != "":
			// The operator stops at its first problem: promenroll's
			// findings include it, in the operator's words.
			found := false
			for _, d := range denials {
				found = found || d.Detail != "" && (strings.Contains(opReason, d.Detail) || strings.Contains(d.Detail, opReason))
			}
			if !found {
				t.Errorf("%s: no denial says what the operator said (%q):\n%s", name, opReason, listErrors(denials))
			}
		}
	}
}

// TestAlertmanagerConfigSelectionByAlertmanagers: an AlertmanagerConfig no
// Alertmanager selects is warned about with what the nearest one requires
// (the operator's semantics: a null selector selects none, a null
// namespace selector the Alertmanager's own namespace); Prometheus objects
// never count as its loaders, nor Alertmanagers as a monitor's; with
// kinds listing it and autoSelectAlertmanager, it gets the labels the
// Alertmanager's selector requires.
func TestAlertmanagerConfigSelectionByAlertmanagers(t *testing.T) {
	team := &metav1.LabelSelector{MatchLabels: map[string]string{"alertmanagerConfig": "main"}}
	loaders := []PrometheusSelectors{
		{Namespace: "monitoring", Name: "main", Rule: &metav1.LabelSelector{}, RuleNamespace: &metav1.LabelSelector{},
			ServiceMonitor: &metav1.LabelSelector{}, ServiceMonitorNamespace: &metav1.LabelSelector{}},
		{Kind: KindAlertmanager, Namespace: "monitoring", Name: "main", AlertmanagerConfig: team, AlertmanagerConfigNamespace: &metav1.LabelSelector{}},
		{Kind: KindAlertmanager, Namespace: "monitoring", Name: "own-namespace", AlertmanagerConfig: &metav1.LabelSelector{}},
	}
	shop := Namespace{Name: "shop"}
	amc := Object{Kind: "AlertmanagerConfig", Namespace: "shop", Labels: map[string]string{}}
	if got := SelectingPrometheuses(loaders, amc, shop); len(got) != 0 {
		t.Errorf("an unlabelled AlertmanagerConfig is loaded by %v", got)
	}
	why := WhyNotSelected(loaders, amc, shop)
	if want := "Alertmanager monitoring/main selects AlertmanagerConfigs with alertmanagerConfig=main"; !strings.Contains(why, want) {
		t.Errorf("why = %q, want it to say %q", why, want)
	}
	amc.Labels["alertmanagerConfig"] = "main"
	if got := SelectingPrometheuses(loaders, amc, shop); !slices.Equal(got, []string{"monitoring/main"}) {
		t.Errorf("loaded by %v, want the Alertmanager monitoring/main only", got)
	}
	sm := Object{Kind: "ServiceMonitor", Namespace: "shop", Labels: map[string]string{}}
	if got := SelectingPrometheuses(loaders[1:], sm, shop); len(got) != 0 || WhyNotSelected(loaders[1:], sm, shop) != "" {
		t.Errorf("an Alertmanager loads or judges a ServiceMonitor: %v", got)
	}

	raw := []byte(`{"apiVersion":"monitoring.coreos.com/v1beta1","kind":"AlertmanagerConfig","metadata":{"name":"shop","namespace":"shop"},"spec":{}}`)
	mutate := func(doc string) Mutation {
		m, err := mustParse(t, doc).Mutate(gkAlertmanagerConfig, MutationRequest{Operation: Create, Object: raw, Namespace: shop, Prometheuses: loaders})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := mutate(minimalPolicy + "monitors: {labels: {release: kps}}\n")
	if len(m.Changes) != 0 {
		t.Errorf("an AlertmanagerConfig got monitors.labels though monitors.kinds does not list it: %v", m.Changes)
	}
	if w := m.Warnings(); len(w) != 1 || !strings.HasPrefix(w[0], NotLoadedByAlertmanagerWarning+"AlertmanagerConfig: ") {
		t.Errorf("warnings %q, want one that no Alertmanager loads it", w)
	}
	m = mutate(minimalPolicy + "monitors: {kinds: [AlertmanagerConfig], autoSelectAlertmanager: monitoring/main}\n")
	if len(m.Changes) != 1 || m.Changes[0].Key != "alertmanagerConfig" || m.Changes[0].Value != "main" || len(m.Warnings()) != 0 {
		t.Errorf("changes %v, warnings %q: want alertmanagerConfig=main from the Alertmanager's selector and no warning", m.Changes, m.Warnings())
	}
}

type secretSet map[string]bool

func (s secretSet) SecretExists(namespace, name string) bool { return s[namespace+"/"+name] }

// TestAlertmanagerConfigMissingSecretsAreWarnedAbout: every Secret key
// selector, of either version's type and however deep (a receiver's own
// field, its httpConfig's basic auth), is checked against the Secrets
// that exist in the object's namespace; a missing one is a warning at its
// field path, never a denial.
func TestAlertmanagerConfigMissingSecretsAreWarnedAbout(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	shop := Namespace{Name: "shop"}
	gate := func(data []byte, secrets SecretReader) Report {
		raw, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		res, err := p.Gate(gkAlertmanagerConfig, raw, shop, ClusterState{Secrets: secrets})
		if err != nil {
			t.Fatal(err)
		}
		return res.Report
	}
	beta, err := os.ReadFile("testdata/alertmanagerconfigs/v1beta1-team-routing.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep := gate(beta, secretSet{"shop/slack": true, "monitoring/pagerduty": true})
	if w := rep.Warnings(); len(w) != 1 || w[0].Field != "spec.receivers[1].pagerdutyConfigs[0].routingKey.name" || !strings.Contains(w[0].Error(), "no Secret pagerduty in namespace shop") {
		t.Errorf("warnings:\n%s\nwant the PagerDuty routing key's Secret only", listErrors(w))
	}
	if len(rep.Denials()) != 0 {
		t.Errorf("a missing Secret denied: %v", rep.Denials())
	}
	if w := gate(beta, nil).Warnings(); len(w) != 0 {
		t.Errorf("without a Secret cache: warnings %v", w)
	}
	alpha, err := os.ReadFile("testdata/alertmanagerconfigs/v1alpha1-basic-auth.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := gate(alpha, secretSet{}).Warnings()
	if len(w) != 2 || w[0].Field != "spec.receivers[0].webhookConfigs[0].httpConfig.basicAuth.username.name" || w[1].Field != "spec.receivers[0].webhookConfigs[0].httpConfig.basicAuth.password.name" {
		t.Errorf("warnings:\n%s\nwant the basic auth's two references", listErrors(w))
	}
	if w := gate(alpha, secretSet{"shop/hooks-creds": true}).Warnings(); len(w) != 0 {
		t.Errorf("the Secret exists, yet: %v", w)
	}
}

// BenchmarkAlertmanagerConfigGate is the gate's cost on a valid team
// config (the operator's validation once), on one with four problems
// (once whole, then per receiver, interval and route), and on a large
// valid one: 60 receivers of all 15 types, a route with a regex matcher for
// each.
func BenchmarkAlertmanagerConfigGate(b *testing.B) {
	p := mustParse(b, minimalPolicy)
	inputs := map[string][]byte{"60-receivers": sixtyReceivers(b)}
	for _, name := range []string{"v1beta1-team-routing.good.yaml", "v1beta1-many-problems.bad.yaml"} {
		data, err := os.ReadFile("testdata/alertmanagerconfigs/" + name)
		if err != nil {
			b.Fatal(err)
		}
		if inputs[name], err = yaml.YAMLToJSON(data); err != nil {
			b.Fatal(err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(inputs)) {
		raw := inputs[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Gate(gkAlertmanagerConfig, raw, Namespace{Name: "shop"}, ClusterState{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// deepRouteAMC is an AlertmanagerConfig whose route tree is depth levels
// deep.
func deepRouteAMC(depth int) []byte {
	route := `{"receiver":"r"}`
	for range depth - 1 {
		route = `{"receiver":"r","routes":[` + route + `]}`
	}
	return []byte(`{"apiVersion":"monitoring.coreos.com/v1alpha1","kind":"AlertmanagerConfig","metadata":{"name":"deep","namespace":"shop"},"spec":{"receivers":[{"name":"r"}],"route":` + route + `}}`)
}

// TestHugeRouteTreesAreAClearDenial: a route tree deeper than
// MaxRouteDepth, or with more than MaxRoutes routes, is denied at
// spec.route with what to do, without running the validation whose cost
// grows with the square of the depth; the deepest and largest allowed
// are judged as usual.
func TestHugeRouteTreesAreAClearDenial(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	gate := func(raw []byte) GateResult {
		res, err := p.Gate(gkAlertmanagerConfig, raw, Namespace{Name: "shop"}, ClusterState{})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if d := gate(deepRouteAMC(MaxRouteDepth)).Report.Denials(); len(d) != 0 {
		t.Errorf("a tree %d deep: %v", MaxRouteDepth, d)
	}
	res := gate(deepRouteAMC(3000))
	if d := res.Report.Denials(); len(d) != 1 || d[0].Field != "spec.route" || !strings.Contains(d[0].Detail, "3000 levels deep; promenroll judges at most 64") || res.Name != "deep" {
		t.Errorf("a tree 3000 deep: %v (name %q)", d, res.Name)
	}
	flat := func(n int) []byte {
		routes := strings.TrimSuffix(strings.Repeat(`{"receiver":"r"},`, n), ",")
		return []byte(`{"apiVersion":"monitoring.coreos.com/v1beta1","kind":"AlertmanagerConfig","metadata":{"name":"wide"},"spec":{"receivers":[{"name":"r"}],"route":{"receiver":"r","routes":[` + routes + `]}}}`)
	}
	if d := gate(flat(MaxRoutes - 1)).Report.Denials(); len(d) != 0 {
		t.Errorf("%d routes: %v", MaxRoutes, d)
	}
	if d := gate(flat(MaxRoutes)).Report.Denials(); len(d) != 1 || d[0].Field != "spec.route.routes" || d[0].Type != field.ErrorTypeTooMany {
		t.Errorf("%d routes: %v", MaxRoutes+1, d)
	}
}

// sixtyReceivers is v1alpha1-every-receiver.good.yaml four times over: 60
// receivers, 60 routes with a regex matcher each, as JSON.
func sixtyReceivers(tb testing.TB) []byte {
	tb.Helper()
	data, err := os.ReadFile("testdata/alertmanagerconfigs/v1alpha1-every-receiver.good.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	var amc map[string]any
	if err := yaml.Unmarshal(data, &amc); err != nil {
		tb.Fatal(err)
	}
	spec := amc["spec"].(map[string]any)
	one := spec["receivers"].([]any)
	var receivers, routes []any
	for copyN := range 4 {
		for _, r := range one {
			c := maps.Clone(r.(map[string]any))
			c["name"] = fmt.Sprintf("%s-%d", c["name"], copyN)
			receivers = append(receivers, c)
			routes = append(routes, map[string]any{"receiver": c["name"], "matchers": []any{map[string]any{"name": "team", "value": fmt.Sprintf("%s.*", c["name"]), "matchType": "=~"}}})
		}
	}
	spec["receivers"] = receivers
	spec["route"] = map[string]any{"receiver": receivers[0].(map[string]any)["name"], "routes": routes}
	raw, err := json.Marshal(amc)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}
