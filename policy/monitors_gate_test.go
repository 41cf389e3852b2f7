package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	monv1alpha1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testdiff"
)

// gateCase is one testdata object (a monitor, an AlertmanagerConfig) and
// the problems expected in its "# expect:" lines (a field path and a part
// of the message).
type gateCase struct {
	path    string
	good    bool
	expects []expectation
	data    []byte
}

func monitorCases(tb testing.TB) []gateCase { return gateCases(tb, "testdata/monitors") }

// judge checks a gate's denials of c: none for a good file, exactly its
// "# expect:" lines for a bad one.
func (c gateCase) judge(t *testing.T, denials field.ErrorList) {
	t.Helper()
	if c.good {
		if len(denials) > 0 {
			t.Fatalf("a good file was denied: %v", denials.ToAggregate())
		}
		return
	}
	if len(c.expects) == 0 {
		t.Fatal("a bad file without # expect: lines")
	}
	matchExpectations(t, c.expects, denials)
}

// gateCases reads the *.good.yaml and *.bad.yaml files under dir.
func gateCases(tb testing.TB, dir string) []gateCase {
	tb.Helper()
	var cases []gateCase
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".good.yaml") || strings.HasSuffix(path, ".bad.yaml")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		c := gateCase{path: path, good: strings.HasSuffix(path, ".good.yaml"), data: data}
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "# expect: "); ok {
				f, m, _ := strings.Cut(rest, ": ")
				c.expects = append(c.expects, expectation{field: f, msg: m})
			}
		}
		cases = append(cases, c)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cases
}

// checkMonitor decodes a testdata file by kind and runs its gate.
func checkMonitor(tb testing.TB, p *Policy, data []byte) Report {
	tb.Helper()
	var meta struct{ Kind string }
	if err := yaml.Unmarshal(data, &meta); err != nil {
		tb.Fatal(err)
	}
	ns := Namespace{Name: "shop"}
	decode := func(v any) {
		if err := yaml.UnmarshalStrict(data, v); err != nil {
			tb.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	switch meta.Kind {
	case "ServiceMonitor":
		var o monv1.ServiceMonitor
		decode(&o)
		return p.CheckServiceMonitor(&o, ns)
	case "PodMonitor":
		var o monv1.PodMonitor
		decode(&o)
		return p.CheckPodMonitor(&o, ns)
	case "Probe":
		var o monv1.Probe
		decode(&o)
		return p.CheckProbe(&o, ns)
	case "ScrapeConfig":
		var o monv1alpha1.ScrapeConfig
		decode(&o)
		return p.CheckScrapeConfig(&o, ns)
	}
	tb.Fatalf("kind %q is not a monitor", meta.Kind)
	return Report{}
}

func TestMonitorGateTestdata(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	bad := 0
	for _, c := range monitorCases(t) {
		if !c.good {
			bad++
		}
		t.Run(c.path, func(t *testing.T) {
			c.judge(t, checkMonitor(t, p, c.data).Denials())
		})
	}
	if bad < 25 {
		t.Errorf("%d bad monitor files, want at least 25 (one per failure kind)", bad)
	}
}

func TestMonitorGateDryRunDeniesNothing(t *testing.T) {
	p := mustParse(t, minimalPolicy+"monitors: {mode: dry-run}\n")
	data, err := os.ReadFile("testdata/monitors/sm-invalid-regex.bad.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep := checkMonitor(t, p, data)
	if rep.Mode != ModeDryRun || len(rep.Denials()) == 0 {
		t.Errorf("mode %s with %d findings: want dry-run reporting what it would deny", rep.Mode, len(rep.Denials()))
	}
}

// TestMonitorGateNamesEveryBadSelectorKeyInOrder: a selector with several
// keys that do not parse is denied once per key, in key order, the same on
// every apply (the operator's check stops at the first, in map order).
func TestMonitorGateNamesEveryBadSelectorKeyInOrder(t *testing.T) {
	p := mustParse(t, minimalPolicy)
	sm := []byte("apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: sm, namespace: shop}\nspec:\n  selector:\n    matchLabels: {'b c': x, 'a b': y, app: web}\n    matchExpressions: [{key: tier, operator: In}]\n  endpoints: [{port: metrics}]\n")
	var first []string
	for i := range 20 {
		var got []string
		for _, d := range checkMonitor(t, p, sm).Denials() {
			got = append(got, d.Error())
		}
		if i == 0 {
			first = got
			continue
		}
		if d := testdiff.Diff(first, got); d != "" {
			t.Fatalf("apply %d named other problems:\n%s", i, d)
		}
	}
	if len(first) != 3 || !strings.Contains(first[0], `"a b"`) || !strings.Contains(first[1], `"b c"`) || !strings.Contains(first[2], "for 'in', 'notin' operators, values set can't be empty") {
		t.Errorf("denials %q: want a b, b c, then the In without values", first)
	}
}
