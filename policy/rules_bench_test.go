package policy

import (
	"os"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

func loadRuleFile(tb testing.TB, path string) (*monv1.PrometheusRule, int) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		tb.Fatal(err)
	}
	var pr monv1.PrometheusRule
	if err := yaml.Unmarshal(data, &pr); err != nil {
		tb.Fatal(err)
	}
	return &pr, len(js)
}

func BenchmarkCheckPrometheusRuleLargest(b *testing.B) {
	p := mustParse(b, minimalPolicy)
	pr, size := loadRuleFile(b, "../../shared/corpus/kube-prometheus/kubernetesControlPlane-prometheusRule.yaml")
	b.ReportAllocs()
	for b.Loop() {
		rep := p.CheckPrometheusRule(pr, size, Namespace{Name: "monitoring"})
		if len(rep.Denials()) > 0 {
			b.Fatal(rep.Denials())
		}
	}
}
