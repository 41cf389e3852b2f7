package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/policystore"
	"github.com/promenroll/promenroll/internal/reporter"
	"github.com/promenroll/promenroll/internal/selftls"
	"github.com/promenroll/promenroll/webhook"
)

// exported are promenroll's metrics, as serve registers them, with their
// labels; a series also carries the labels Prometheus' scrape adds.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	reg := prometheus.NewRegistry()
	webhook.NewMetrics(reg)
	selftls.NewMetrics(reg)
	policystore.NewMetrics(reg)
	reporter.NewMetrics(reg)
	descs := make(chan *prometheus.Desc, 100)
	go func() {
		// Describe every collector registered: the registry gathers only
		// series with values, a Desc names every metric and its labels.
		for _, c := range []prometheus.Collector{reg} {
			c.Describe(descs)
		}
		close(descs)
	}()
	name := regexp.MustCompile(`fqName: "([a-z_:]+)"`)
	vars := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	out := map[string][]string{}
	for d := range descs {
		s := d.String()
		n := name.FindStringSubmatch(s)
		if n == nil {
			t.Fatalf("cannot read %s", s)
		}
		var labels []string
		if v := vars.FindStringSubmatch(s); v != nil && v[1] != "" {
			labels = strings.Split(v[1], ",")
		}
		out[n[1]] = labels
	}
	return out
}

// scrapeLabels are the target labels Prometheus adds to every series.
var scrapeLabels = []string{"job", "instance", "pod", "namespace", "container", "endpoint", "service", "le"}

// checkExpr fails for a metric or label the expression reads that
// promenroll does not export.
func checkExpr(t *testing.T, where, expr string, metrics map[string][]string) {
	t.Helper()
	// Grafana's variables are not PromQL.
	e, err := parser.NewParser(parser.Options{}).ParseExpr(strings.NewReplacer("$job", "x", "$__rate_interval", "5m").Replace(expr))
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		base := vs.Name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if trimmed, ok := strings.CutSuffix(base, suffix); ok {
				if _, known := metrics[trimmed]; known {
					base = trimmed
				}
			}
		}
		labels, known := metrics[base]
		if base == "up" {
			return nil // Prometheus' own series of each scrape
		}
		if !known {
			t.Errorf("%s: %s is not a metric promenroll exports", where, vs.Name)
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != "__name__" && !slices.Contains(labels, m.Name) && !slices.Contains(scrapeLabels, m.Name) {
				t.Errorf("%s: %s has no label %s (it has %v)", where, base, m.Name, labels)
			}
		}
		return nil
	})
	for _, g := range []*regexp.Regexp{regexp.MustCompile(`by \(([^)]*)\)`)} {
		for _, m := range g.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(m[1], ",") {
				l = strings.TrimSpace(l)
				found := slices.Contains(scrapeLabels, l)
				for _, ls := range metrics {
					found = found || slices.Contains(ls, l)
				}
				if !found {
					t.Errorf("%s: %q groups by %s, a label no promenroll metric has", where, expr, l)
				}
			}
		}
	}
}

func TestDashboardAndAlertsReadOnlyWhatPromenrollExports(t *testing.T) {
	metrics := exported(t)
	root := filepath.Join("..", "..")
	for _, p := range []string{"deploy/base/dashboard/promenroll.json", "charts/promenroll/files/promenroll-dashboard.json"} {
		raw, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		n := 0
		for _, panel := range d.Panels {
			for _, tg := range panel.Targets {
				checkExpr(t, p+": panel "+panel.Title, tg.Expr, metrics)
				n++
			}
		}
		if n < 20 {
			t.Errorf("%s: %d queries, the dashboard lost panels", p, n)
		}
	}
	chart, _ := os.ReadFile(filepath.Join(root, "charts/promenroll/files/promenroll-dashboard.json"))
	kustomize, _ := os.ReadFile(filepath.Join(root, "deploy/base/dashboard/promenroll.json"))
	if string(chart) != string(kustomize) {
		t.Error("the chart's dashboard (charts/promenroll/files) differs from deploy/base/dashboard's: copy it")
	}

	raw, err := os.ReadFile(filepath.Join(root, "deploy/base/monitors/promenroll.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var pr struct {
			Kind string
			Spec struct {
				Groups []struct {
					Rules []struct{ Alert, Record, Expr string }
				}
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &pr); err != nil {
			t.Fatal(err)
		}
		for _, g := range pr.Spec.Groups {
			for _, r := range g.Rules {
				checkExpr(t, "PrometheusRule promenroll: "+r.Alert+r.Record, r.Expr, metrics)
			}
		}
	}
	if _, ok := metrics["promenroll_status_results"]; !ok {
		t.Fatal("the status' metrics are not registered")
	}
}
