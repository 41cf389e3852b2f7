package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

func BenchmarkEnrollDeployment(b *testing.B) {
	p := mustParse(b, enrollPolicy)
	req := EnrollRequest{Operation: Create, Namespace: monitoringNS,
		Object: deployment(map[string]string{"app.kubernetes.io/name": "api", "app.kubernetes.io/version": "1.2.3"}, map[string]string{"app.kubernetes.io/name": "api"})}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Enroll(req); len(d.Changes) != 4 {
			b.Fatalf("changes %v", d.Changes)
		}
	}
}

func benchmarkRule(b *testing.B, p *Policy, pr *monv1.PrometheusRule, size int) {
	b.Helper()
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		if d := p.CheckPrometheusRule(pr, size, Namespace{Name: "monitoring"}).Denials(); len(d) > 0 {
			b.Fatal(d.ToAggregate())
		}
	}
}

func BenchmarkCheckPrometheusRuleSmall(b *testing.B) {
	pr := &monv1.PrometheusRule{Spec: monv1.PrometheusRuleSpec{Groups: []monv1.RuleGroup{{Name: "api", Rules: []monv1.Rule{
		{Record: "job:http_requests:rate5m", Expr: intstr.FromString(`sum by (job) (rate(http_requests_total[5m]))`)},
		{Alert: "APIHighErrorRate", Expr: intstr.FromString(`sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > 0.05`),
			For: ptr(monv1.Duration("10m")), Labels: map[string]string{"severity": "critical"}, Annotations: map[string]string{"summary": "{{ $value | humanizePercentage }} errors"}},
		{Alert: "APIDown", Expr: intstr.FromString(`up{job="api"} == 0`), For: ptr(monv1.Duration("5m")), Labels: map[string]string{"severity": "critical"}},
	}}}}}
	raw, _ := json.Marshal(pr)
	benchmarkRule(b, suitePolicy(b, "default"), pr, len(raw))
}

// BenchmarkCheckPrometheusRuleLargest is kube-prometheus' largest object
// (kubernetesControlPlane, 134 rules).
func BenchmarkCheckPrometheusRuleLargest(b *testing.B) {
	pr, size := ruleFile(b, "testdata/rules/default/kube-prometheus/kubernetesControlPlane.good.yaml")
	benchmarkRule(b, suitePolicy(b, "default"), pr, size)
}

// BenchmarkCheckPrometheusRule512KiB is a synthetic object of 512 KiB, the
// default rules.maxBytes, made of kube-prometheus' rule groups repeated.
func BenchmarkCheckPrometheusRule512KiB(b *testing.B) {
	pr, size := synthetic512KiB(b)
	p := mustParse(b, "apiVersion: promenroll.io/v1alpha1\nkind: Policy\nrules:\n  maxBytes: 1048576\n")
	benchmarkRule(b, p, pr, size)
}

func ruleFile(tb testing.TB, path string) (*monv1.PrometheusRule, int) {
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
	if err := json.Unmarshal(js, &pr); err != nil {
		tb.Fatal(err)
	}
	return &pr, len(js)
}

func synthetic512KiB(tb testing.TB) (*monv1.PrometheusRule, int) {
	tb.Helper()
	src, _ := ruleFile(tb, "testdata/rules/default/kube-prometheus/kubernetesControlPlane.good.yaml")
	out := &monv1.PrometheusRule{}
	for i := 0; ; i++ {
		for _, g := range src.Spec.Groups {
			g.Name = fmt.Sprintf("%s-%d", g.Name, i)
			out.Spec.Groups = append(out.Spec.Groups, g)
			raw, _ := json.Marshal(out)
			if len(raw) >= 512*1024 {
				out.Spec.Groups = out.Spec.Groups[:len(out.Spec.Groups)-1]
				raw, _ = json.Marshal(out)
				return out, len(raw)
			}
		}
	}
}
