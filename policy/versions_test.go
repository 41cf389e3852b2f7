package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/blang/semver/v4"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func versionedPrometheus(version string) PrometheusSelectors {
	all := &metav1.LabelSelector{}
	return PrometheusSelectors{Namespace: "monitoring", Name: "k8s", Version: version, Rule: all, RuleNamespace: all}
}

func TestRuleFieldsAnOlderPrometheusDoesNotGetAreWarned(t *testing.T) {
	p := mustParse(t, statusPolicy)
	limit, offset, keep := 10, monv1.Duration("1m"), monv1.NonEmptyDuration("5m")
	pr := &monv1.PrometheusRule{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "r", Labels: map[string]string{"release": "kube-prometheus-stack"}},
		Spec: monv1.PrometheusRuleSpec{Groups: []monv1.RuleGroup{{Name: "g", Limit: &limit, QueryOffset: &offset, Labels: map[string]string{"team": "shop"},
			Rules: []monv1.Rule{{Alert: "Down", Expr: intstr.FromString("up == 0"), KeepFiringFor: &keep, Labels: map[string]string{"severity": "critical"}}}}}}}
	for _, tc := range []struct {
		version string
		want    []string
	}{
		{"v2.30.0", []string{"spec.groups[0].limit", "spec.groups[0].query_offset", "spec.groups[0].labels", "spec.groups[0].rules[0].keep_firing_for"}},
		{"2.45.0", []string{"spec.groups[0].query_offset", "spec.groups[0].labels"}},
		{"v2.55.1", []string{"spec.groups[0].labels"}},
		{"v3.0.0", nil},
		{"", nil}, // the operator's default, v3.14.0
		{"not-a-version", nil},
	} {
		t.Run(tc.version, func(t *testing.T) {
			cs := ClusterState{Prometheuses: []PrometheusSelectors{versionedPrometheus(tc.version)}}
			var got []string
			for _, f := range ruleVersionFindings(pr, Namespace{Name: "shop"}, cs) {
				got = append(got, f.Err.Field)
				if f.Level != LevelWarn || f.Check != CheckVersion || !strings.Contains(f.Err.Detail, "Prometheus monitoring/k8s runs Prometheus "+tc.version) {
					t.Errorf("%s: %s %s %q", f.Err.Field, f.Level, f.Check, f.Err.Detail)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("warned %v, want %v", got, tc.want)
			}
		})
	}
	f := ruleVersionFindings(pr, Namespace{Name: "shop"}, ClusterState{Prometheuses: []PrometheusSelectors{versionedPrometheus("v2.41.0")}})
	want := "spec.groups[0].rules[0].keep_firing_for: Invalid value: Prometheus monitoring/k8s runs Prometheus v2.41.0, older than v2.42.0: the operator drops keep_firing_for there and loads the rule without it (raise its spec.version to v2.42.0 or later, or remove the field)"
	if got := f[len(f)-1].Err.Error(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// Through the gate table, as /validate, check and audit judge it.
	js, _ := json.Marshal(pr)
	got := versionWarnings(t, p, "PrometheusRule", js, ClusterState{Prometheuses: []PrometheusSelectors{versionedPrometheus("v2.41.0")}})
	if want := "spec.groups[0].query_offset spec.groups[0].labels spec.groups[0].rules[0].keep_firing_for"; strings.Join(got, " ") != want {
		t.Errorf("the gate warned %v, want %s", got, want)
	}
}

// TestRuleVersionGatesAreTheOperators reads the operator's source at the
// version the e2e control plane runs and compares each minimum, and the
// default version, with the table.
func TestRuleVersionGatesAreTheOperators(t *testing.T) {
	dir := operatorModule(t)
	version := filepath.Base(dir)
	src, err := os.ReadFile(filepath.Join(dir, "pkg", "operator", "rules.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, fn, ok := strings.Cut(string(src), "func (prs *PrometheusRuleSelector) sanitizePrometheusRulesSpec(")
	if !ok {
		t.Fatalf("the operator %s has no sanitizePrometheusRulesSpec in pkg/operator/rules.go: the table's source moved", version)
	}
	prometheusPart, _, _ := strings.Cut(fn, "ThanosFormat {")
	names := map[string]string{"KeepFiringFor": "keep_firing_for", "Limits": "limit", "QueryOffset": "query_offset", "RuleGroupLabels": "labels"}
	found := 0
	for _, m := range regexp.MustCompile(`minVersion(\w+) := semver\.MustParse\("([0-9.]+)"\)`).FindAllStringSubmatch(prometheusPart, -1) {
		fieldName, ok := names[m[1]]
		if !ok {
			t.Errorf("the operator %s gates %s (minimum %s), which the table does not know", version, m[1], m[2])
			continue
		}
		found++
		for _, g := range ruleVersionGates {
			if g.Field == fieldName && g.Min.String() != m[2] {
				t.Errorf("%s: the table says v%s, the operator %s v%s", fieldName, g.Min, version, m[2])
			}
		}
	}
	if found != len(ruleVersionGates) {
		t.Errorf("%d gates in the operator's sanitizePrometheusRulesSpec, %d in the table", found, len(ruleVersionGates))
	}
	defaults, err := os.ReadFile(filepath.Join(dir, "pkg", "operator", "defaults.go"))
	if err != nil {
		t.Fatal(err)
	}
	matrix := regexp.MustCompile(`"(v[0-9]+\.[0-9]+\.[0-9]+)",`).FindAllStringSubmatch(string(defaults), -1)
	if len(matrix) == 0 || matrix[len(matrix)-1][1] != DefaultPrometheusVersion {
		t.Errorf("DefaultPrometheusVersion is %s; the operator %s's compatibility matrix ends with %v", DefaultPrometheusVersion, version, matrix[len(matrix)-1])
	}
}

func TestAMonitorAnOlderPrometheusRejectsIsWarned(t *testing.T) {
	p := mustParse(t, statusPolicy)
	all := &metav1.LabelSelector{}
	sm := &monv1.ServiceMonitor{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "m", Labels: map[string]string{"release": "kube-prometheus-stack"}},
		Spec: monv1.ServiceMonitorSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, Endpoints: []monv1.Endpoint{{Port: "metrics",
			RelabelConfigs:       []monv1.RelabelConfig{{Action: "keep", SourceLabels: []monv1.LabelName{"a"}, Regex: "x"}, {Action: "KeepEqual", SourceLabels: []monv1.LabelName{"a"}, TargetLabel: "b"}},
			MetricRelabelConfigs: []monv1.RelabelConfig{{Action: "lowercase", SourceLabels: []monv1.LabelName{"a"}, TargetLabel: "b"}}}}}}
	js, _ := json.Marshal(sm)
	for _, tc := range []struct {
		version string
		want    []string
	}{
		{"v2.35.0", []string{"spec.endpoints[0].relabelings[1].action", "spec.endpoints[0].metricRelabelings[0].action"}},
		{"v2.40.0", []string{"spec.endpoints[0].relabelings[1].action"}},
		{"v2.41.0", nil},
		{"", nil},
	} {
		cs := ClusterState{Prometheuses: []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", Version: tc.version, ServiceMonitor: all, ServiceMonitorNamespace: all}}}
		if got := versionWarnings(t, p, "ServiceMonitor", js, cs); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: warned %v, want %v", tc.version, got, tc.want)
		}
	}
}

// TestRelabelActionGatesAreTheOperators compares the table with the
// operator's ValidateRelabelConfig at the e2e's operator version.
func TestRelabelActionGatesAreTheOperators(t *testing.T) {
	dir := operatorModule(t)
	src, err := os.ReadFile(filepath.Join(dir, "pkg", "prometheus", "validation", "validator.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`minimumVersionCaseActions := lcv.v.GTE(semver.MustParse("2.36.0"))`, `minimumVersionEqualActions := lcv.v.GTE(semver.MustParse("2.41.0"))`,
		`(action == string(relabel.Lowercase) || action == string(relabel.Uppercase)) && !minimumVersionCaseActions`,
		`(action == string(relabel.KeepEqual) || action == string(relabel.DropEqual)) && !minimumVersionEqualActions`} {
		if !strings.Contains(string(src), want) {
			t.Errorf("the operator's ValidateRelabelConfig no longer says %s: update relabelActionGates", want)
		}
	}
	if relabelActionGates[0].Min.String() != "2.36.0" || relabelActionGates[1].Min.String() != "2.41.0" {
		t.Errorf("relabelActionGates %+v", relabelActionGates)
	}
}

// operatorModule is the operator's module, at the version the e2e control
// plane runs (test/tools/operator), from the module proxy like the tools.
func operatorModule(t *testing.T) string {
	t.Helper()
	version := requiredVersion(t, "../test/tools/operator/go.mod", "github.com/prometheus-operator/prometheus-operator")
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator@"+version)
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		if os.Getenv("CI") == "" {
			t.Skipf("go mod download: %v %v %s", err, jerr, mod.Error)
		}
		t.Fatalf("go mod download: %v %v %s", err, jerr, mod.Error)
	}
	return mod.Dir
}

func TestMonitorFieldsAnOlderPrometheusLeavesOutAreWarned(t *testing.T) {
	p := mustParse(t, statusPolicy)
	all := &metav1.LabelSelector{}
	limit, stale := int64(100), true
	pm := &monv1.PodMonitor{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "m", Labels: map[string]string{"release": "kube-prometheus-stack"}},
		Spec: monv1.PodMonitorSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, KeepDroppedTargets: &limit,
			ScrapeProtocols:     []monv1.ScrapeProtocol{monv1.PrometheusProto},
			PodMetricsEndpoints: []monv1.PodMetricsEndpoint{{Port: ptrTo("metrics"), TrackTimestampsStaleness: &stale}}}}
	js, _ := json.Marshal(pm)
	for _, tc := range []struct {
		version string
		want    []string
	}{
		{"v2.46.0", []string{"spec.keepDroppedTargets", "spec.scrapeProtocols", "spec.podMetricsEndpoints[0].trackTimestampsStaleness"}},
		{"v2.48.0", []string{"spec.scrapeProtocols"}},
		{"v2.49.0", nil},
		{"", nil},
	} {
		cs := ClusterState{Prometheuses: []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", Version: tc.version, PodMonitor: all, PodMonitorNamespace: all}}}
		if got := versionWarnings(t, p, "PodMonitor", js, cs); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: warned %v, want %v", tc.version, got, tc.want)
		}
	}
}

// TestHTTPClientFieldsAnOlderPrometheusLeavesOutAreWarned: the HTTP
// client options are found where each kind declares them, nested ones
// included: a ServiceMonitor endpoint's, a Probe's spec.
func TestHTTPClientFieldsAnOlderPrometheusLeavesOutAreWarned(t *testing.T) {
	p := mustParse(t, statusPolicy)
	all := &metav1.LabelSelector{}
	tls13, yes := monv1.TLSVersion13, true
	sm := &monv1.ServiceMonitor{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "m", Labels: map[string]string{"release": "kube-prometheus-stack"}},
		Spec: monv1.ServiceMonitorSpec{Selector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}, Endpoints: []monv1.Endpoint{{Port: "metrics",
			HTTPConfigWithProxyAndTLSFiles: monv1.HTTPConfigWithProxyAndTLSFiles{HTTPConfigWithTLSFiles: monv1.HTTPConfigWithTLSFiles{
				TLSConfig:            &monv1.TLSConfig{SafeTLSConfig: monv1.SafeTLSConfig{MaxVersion: &tls13}},
				HTTPConfigWithoutTLS: monv1.HTTPConfigWithoutTLS{FollowRedirects: &yes, EnableHTTP2: &yes}}}}}}}
	js, _ := json.Marshal(sm)
	for _, tc := range []struct {
		version string
		want    []string
	}{
		{"v2.25.0", []string{"spec.endpoints[0].followRedirects", "spec.endpoints[0].enableHttp2", "spec.endpoints[0].tlsConfig.maxVersion"}},
		{"v2.40.0", []string{"spec.endpoints[0].tlsConfig.maxVersion"}},
		{"v2.41.0", nil},
	} {
		cs := ClusterState{Prometheuses: []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", Version: tc.version, ServiceMonitor: all, ServiceMonitorNamespace: all}}}
		if got := versionWarnings(t, p, "ServiceMonitor", js, cs); strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("ServiceMonitor, %s: warned %v, want %v", tc.version, got, tc.want)
		}
	}
	probe := []byte(`{"apiVersion":"monitoring.coreos.com/v1","kind":"Probe","metadata":{"name":"p","namespace":"shop","labels":{"release":"kube-prometheus-stack"}},
		"spec":{"prober":{"url":"blackbox:9115"},"authorization":{"credentials":{"name":"t","key":"k"}},"targets":{"staticConfig":{"static":["https://example.com"]}}}}`)
	cs := ClusterState{Prometheuses: []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", Version: "v2.25.0", Probe: all, ProbeNamespace: all}}}
	if got := versionWarnings(t, p, "Probe", probe, cs); strings.Join(got, " ") != "spec.authorization" {
		t.Errorf("Probe: warned %v, want spec.authorization", got)
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestSpecVersionGatesAreTheOperators compares every entry with the
// operator's promcfg.go at the e2e's operator version: its
// WithMinimumVersion(...).AppendMapItem(cfg, "key", ...) calls and its
// limitKey table.
func TestSpecVersionGatesAreTheOperators(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(operatorModule(t), "pkg", "prometheus", "promcfg.go"))
	if err != nil {
		t.Fatal(err)
	}
	// The first call per key is the scrape configuration's (the helpers
	// near the top of the file); later ones write the global section.
	mins := map[string]string{}
	for _, m := range regexp.MustCompile(`WithMinimumVersion\("([0-9.]+)"\)\.AppendMapItem\(\w+, "(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		if _, seen := mins[m[2]]; !seen {
			mins[m[2]] = m[1]
		}
	}
	for _, m := range regexp.MustCompile(`prometheusField: "(\w+)",\s+minVersion:\s+"([0-9.]+)"`).FindAllStringSubmatch(string(src), -1) {
		mins[m[1]] = m[2]
	}
	// The proxy options go through one generator made for them.
	if m := regexp.MustCompile(`cgProxyConfig := cg\.WithMinimumVersion\("([0-9.]+)"\)`).FindStringSubmatch(string(src)); m != nil {
		for _, k := range regexp.MustCompile(`cgProxyConfig\.AppendMapItem\(cfg, "(\w+)"`).FindAllStringSubmatch(string(src), -1) {
			mins[k[1]] = m[1]
		}
	}
	for _, g := range specVersionGates {
		if got, ok := mins[g.Key]; !ok || got != g.Min.String() {
			t.Errorf("%s (%s): the table says v%s, the operator's promcfg.go %q", g.JSON, g.Key, g.Min, got)
		}
	}
}

// versionWarnings runs obj (JSON of kind) through the gate table, as
// /validate does, and returns the fields of its version warnings; a
// version finding is never a denial.
func versionWarnings(t *testing.T, p *Policy, kind string, js []byte, cs ClusterState) []string {
	t.Helper()
	res, err := p.Gate(monv1.SchemeGroupVersion.WithKind(kind).GroupKind(), js, Namespace{Name: "shop"}, cs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range res.Report.Findings {
		if f.Check == CheckVersion {
			got = append(got, f.Err.Field)
		}
	}
	if d := res.Report.Denials(); len(d) != 0 {
		t.Errorf("%s: denied %v: version findings only warn", kind, d)
	}
	return got
}

// justBelow is the newest version older than v: a patch, else a minor,
// else a major release before it.
func justBelow(v semver.Version) string {
	switch {
	case v.Patch > 0:
		return fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch-1)
	case v.Minor > 0:
		return fmt.Sprintf("v%d.%d.99", v.Major, v.Minor-1)
	}
	return fmt.Sprintf("v%d.99.99", v.Major-1)
}

// specGateValues are a valid value of each field of specVersionGates.
var specGateValues = map[string]any{
	"targetLimit": 10, "labelLimit": 10, "labelNameLengthLimit": 10, "labelValueLengthLimit": 10, "keepDroppedTargets": 10,
	"scrapeProtocols": []any{"PrometheusProto"}, "fallbackScrapeProtocol": "PrometheusText0.0.4",
	"nativeHistogramBucketLimit": 10, "nativeHistogramMinBucketFactor": "1.1", "scrapeClassicHistograms": true,
	"convertClassicHistogramsToNHCB": true, "scrapeNativeHistograms": true, "trackTimestampsStaleness": true,
	"bodySizeLimit": "10MB", "enableCompression": false, "authorization": map[string]any{"credentials": map[string]any{"name": "t", "key": "k"}},
	"oauth2":          map[string]any{"clientId": map[string]any{"secret": map[string]any{"name": "o", "key": "id"}}, "clientSecret": map[string]any{"name": "o", "key": "s"}, "tokenUrl": "https://auth.example.com/token"}, //nolint:gosec // the names of a Secret and its keys, not a credential
	"followRedirects": true, "enableHttp2": true, "enableHTTP2": true,
	"tlsConfig.minVersion": "TLS12", "tlsConfig.maxVersion": "TLS13",
	"noProxy": "10.0.0.0/8", "proxyFromEnvironment": true, "proxyConnectHeader": map[string]any{"X-Team": []any{map[string]any{"name": "p", "key": "team"}}},
}

// TestEverySpecVersionGate: each entry of the table, set where a monitor
// kind declares it (a ServiceMonitor's spec or endpoint, a Probe's or a
// ScrapeConfig's spec), is warned about at its path for a Prometheus just
// older than its minimum, and not for one at the minimum.
func TestEverySpecVersionGate(t *testing.T) {
	p := mustParse(t, statusPolicy)
	all := &metav1.LabelSelector{}
	meta := map[string]any{"name": "m", "namespace": "shop", "labels": map[string]any{"release": "kube-prometheus-stack"}}
	for _, g := range specVersionGates {
		value, ok := specGateValues[g.JSON]
		if !ok {
			t.Errorf("%s: no test value in specGateValues", g.JSON)
			continue
		}
		set := func(m map[string]any) map[string]any {
			parts := strings.Split(g.JSON, ".")
			at := m
			for _, part := range parts[:len(parts)-1] {
				next := map[string]any{}
				at[part] = next
				at = next
			}
			at[parts[len(parts)-1]] = value
			return m
		}
		placements := []struct {
			kind, where string
			obj         map[string]any
		}{
			{"ServiceMonitor", "spec." + g.JSON, map[string]any{"spec": set(map[string]any{"selector": map[string]any{}, "endpoints": []any{map[string]any{"port": "m"}}})}},
			{"ServiceMonitor", "spec.endpoints[0]." + g.JSON, map[string]any{"spec": map[string]any{"selector": map[string]any{}, "endpoints": []any{set(map[string]any{"port": "m"})}}}},
			{"Probe", "spec." + g.JSON, map[string]any{"spec": set(map[string]any{"prober": map[string]any{"url": "b:9115"}})}},
			{"ScrapeConfig", "spec." + g.JSON, map[string]any{"spec": set(map[string]any{})}},
		}
		found := false
		for _, pl := range placements {
			pl.obj["apiVersion"], pl.obj["kind"], pl.obj["metadata"] = "monitoring.coreos.com/v1", pl.kind, meta
			gv := monv1.SchemeGroupVersion
			if pl.kind == "ScrapeConfig" {
				pl.obj["apiVersion"] = "monitoring.coreos.com/v1alpha1"
				gv = monv1alpha1.SchemeGroupVersion
			}
			js, _ := json.Marshal(pl.obj)
			judge := func(version string) []string {
				cs := ClusterState{Prometheuses: []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", Version: version,
					ServiceMonitor: all, ServiceMonitorNamespace: all, Probe: all, ProbeNamespace: all, ScrapeConfig: all, ScrapeConfigNamespace: all}}}
				res, err := p.Gate(gv.WithKind(pl.kind).GroupKind(), js, Namespace{Name: "shop"}, cs)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, f := range res.Report.Findings {
					if f.Check == CheckVersion && f.Err.Field == pl.where {
						got = append(got, f.Err.Field)
					}
				}
				return got
			}
			below := judge(justBelow(g.Min))
			if len(below) == 0 {
				continue // the kind does not declare the field there
			}
			found = true
			if at := judge("v" + g.Min.String()); len(at) != 0 {
				t.Errorf("%s at %s: warned for a Prometheus at the minimum v%s", g.JSON, pl.where, g.Min)
			}
		}
		if !found {
			t.Errorf("%s: no monitor kind warned about it for Prometheus %s", g.JSON, justBelow(g.Min))
		}
	}
}

// TestEveryRelabelActionGate: each action of the table is warned about
// for a Prometheus just older than its minimum, and not at the minimum.
func TestEveryRelabelActionGate(t *testing.T) {
	p := mustParse(t, statusPolicy)
	all := &metav1.LabelSelector{}
	for _, g := range relabelActionGates {
		for _, action := range g.Actions {
			js := []byte(`{"apiVersion":"monitoring.coreos.com/v1","kind":"PodMonitor","metadata":{"name":"m","namespace":"shop","labels":{"release":"kube-prometheus-stack"}},
				"spec":{"selector":{},"podMetricsEndpoints":[{"port":"m","relabelings":[{"action":"` + action + `","sourceLabels":["a"],"targetLabel":"b"}]}]}}`)
			for version, want := range map[string]int{justBelow(g.Min): 1, "v" + g.Min.String(): 0} {
				cs := ClusterState{Prometheuses: []PrometheusSelectors{{Namespace: "monitoring", Name: "k8s", Version: version, PodMonitor: all, PodMonitorNamespace: all}}}
				if got := versionWarnings(t, p, "PodMonitor", js, cs); len(got) != want {
					t.Errorf("%s, Prometheus %s: warnings %v, want %d", action, version, got, want)
				}
			}
		}
	}
}
