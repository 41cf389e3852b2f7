package policy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testdiff"
)

// FuzzParsePolicy: no policy document may panic or hang the loader.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(specExample))
	f.Add([]byte(enrollPolicy))
	paths, _ := filepath.Glob("testdata/rules/*/policy.yaml")
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data, Options{})
		if err == nil && p == nil {
			t.Fatal("nil policy without an error")
		}
		if p != nil {
			// A policy that loads must decide without panicking.
			p.Enroll(EnrollRequest{Operation: Create, Object: deployment(map[string]string{"a": "b"}, nil), Namespace: monitoringNS})
		}
	})
}

// FuzzCheckPrometheusRule: no PrometheusRule may panic or hang the gate,
// and the verdict is the same every time.
func FuzzCheckPrometheusRule(f *testing.F) {
	for _, c := range ruleCases(f) {
		f.Add(c.raw)
	}
	p := suitePolicy(f, "default")
	f.Fuzz(func(t *testing.T, raw []byte) {
		var pr monv1.PrometheusRule
		if err := json.Unmarshal(raw, &pr); err != nil {
			return
		}
		first := p.CheckPrometheusRule(&pr, len(raw), Namespace{Name: "shop"})
		second := p.CheckPrometheusRule(&pr, len(raw), Namespace{Name: "shop"})
		if d := testdiff.Diff(first, second); d != "" {
			t.Fatalf("verdict varies between two runs:\n%s", d)
		}
		var spec struct {
			Spec RawRuleSpec `json:"spec"`
		}
		if json.Unmarshal(raw, &spec) == nil {
			CoerceRuleValues(spec.Spec)
		}
	})
}

// FuzzCheckMonitor: no ServiceMonitor, PodMonitor, Probe or ScrapeConfig
// may panic or hang the monitor gate, and the verdict is the same every
// time. Seeded with the testdata monitors.
func FuzzCheckMonitor(f *testing.F) {
	for _, c := range monitorCases(f) {
		if raw, err := yaml.YAMLToJSON(c.data); err == nil {
			f.Add(raw)
		}
	}
	p := mustParse(f, minimalPolicy)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var meta struct{ Kind string }
		if json.Unmarshal(raw, &meta) != nil {
			return
		}
		check := func() Report {
			ns := Namespace{Name: "shop"}
			switch meta.Kind {
			case "PodMonitor":
				var o monv1.PodMonitor
				_ = json.Unmarshal(raw, &o)
				return p.CheckPodMonitor(&o, ns)
			case "Probe":
				var o monv1.Probe
				_ = json.Unmarshal(raw, &o)
				return p.CheckProbe(&o, ns)
			case "ScrapeConfig":
				var o monv1alpha1.ScrapeConfig
				_ = json.Unmarshal(raw, &o)
				return p.CheckScrapeConfig(&o, ns)
			default:
				var o monv1.ServiceMonitor
				_ = json.Unmarshal(raw, &o)
				return p.CheckServiceMonitor(&o, ns)
			}
		}
		if d := testdiff.Diff(check(), check()); d != "" {
			t.Fatalf("verdict varies between two runs:\n%s", d)
		}
	})
}

// FuzzAlertmanagerConfigGate: no AlertmanagerConfig, of either version,
// may panic or hang the gate, and the verdict is the same every time.
// Seeded with the testdata AlertmanagerConfigs, a deep route tree and
// invalid UTF-8 in a matcher.
func FuzzAlertmanagerConfigGate(f *testing.F) {
	for _, c := range gateCases(f, "testdata/alertmanagerconfigs") {
		if raw, err := yaml.YAMLToJSON(c.data); err == nil {
			f.Add(raw)
		}
	}
	f.Add(deepRouteAMC(MaxRouteDepth + 1))
	f.Add([]byte("{\"apiVersion\":\"monitoring.coreos.com/v1beta1\",\"kind\":\"AlertmanagerConfig\",\"metadata\":{\"name\":\"x\"},\"spec\":{\"receivers\":[{\"name\":\"r\"}],\"route\":{\"receiver\":\"r\",\"routes\":[{\"matchers\":[{\"name\":\"a\",\"value\":\"\xff\xfe(\",\"matchType\":\"=~\"}]}]}}}"))
	p := mustParse(f, minimalPolicy)
	gk := gkAlertmanagerConfig
	f.Fuzz(func(t *testing.T, raw []byte) {
		judge := func() (GateResult, error) { return p.Gate(gk, raw, Namespace{Name: "shop"}, ClusterState{}) }
		a, errA := judge()
		b, errB := judge()
		if (errA == nil) != (errB == nil) {
			t.Fatalf("errors vary: %v, %v", errA, errB)
		}
		if d := testdiff.Diff(a, b); d != "" {
			t.Fatalf("verdict varies between two runs:\n%s", d)
		}
	})
}
