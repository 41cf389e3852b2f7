package policy

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	texttemplate "text/template"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// ruleCase is one testdata PrometheusRule: its suite (the folder, whose
// policy.yaml applies), and the problems expected in "# expect:" lines:
// a field path and a part of the message.
type ruleCase struct {
	path    string
	suite   string
	good    bool
	expects []expectation
	// warns are "# warn:" lines: warnings a good file must get.
	warns []expectation
	raw   []byte // JSON, as the API server sends it
	rule  *monv1.PrometheusRule
}

type expectation struct{ field, msg string }

func ruleCases(tb testing.TB) []ruleCase {
	tb.Helper()
	var cases []ruleCase
	err := filepath.WalkDir("testdata/rules", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".good.yaml") || strings.HasSuffix(path, ".bad.yaml")) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		c := ruleCase{path: path, suite: strings.Split(filepath.ToSlash(path), "/")[2], good: strings.HasSuffix(path, ".good.yaml")}
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "# expect: "); ok {
				f, m, _ := strings.Cut(rest, ": ")
				c.expects = append(c.expects, expectation{field: f, msg: m})
			}
			if rest, ok := strings.CutPrefix(line, "# warn: "); ok {
				f, m, _ := strings.Cut(rest, ": ")
				c.warns = append(c.warns, expectation{field: f, msg: m})
			}
		}
		if c.raw, err = yaml.YAMLToJSON(data); err != nil {
			return err
		}
		c.rule = &monv1.PrometheusRule{}
		if err := yaml.Unmarshal(data, c.rule); err != nil {
			return err
		}
		cases = append(cases, c)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return cases
}

func suitePolicy(tb testing.TB, suite string) *Policy {
	tb.Helper()
	p, err := Load(filepath.Join("testdata/rules", suite, "policy.yaml"), Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestCheckPrometheusRuleTestdata(t *testing.T) {
	cases := ruleCases(t)
	bad := 0
	for _, c := range cases {
		if !c.good {
			bad++
		}
		t.Run(c.path, func(t *testing.T) {
			rep := suitePolicy(t, c.suite).CheckPrometheusRule(c.rule, len(c.raw), Namespace{Name: "shop"})
			denials := rep.Denials()
			if c.good {
				if len(denials) > 0 {
					t.Fatalf("a good rule file was denied: %v", denials.ToAggregate())
				}
				for _, w := range c.warns {
					if !slices.ContainsFunc(rep.Warnings(), func(e *field.Error) bool { return e.Field == w.field && strings.Contains(e.Error(), w.msg) }) {
						t.Errorf("no warning at %s containing %q; got:\n%s", w.field, w.msg, listErrors(rep.Warnings()))
					}
				}
				return
			}
			if len(c.expects) == 0 {
				t.Fatal("a bad file without # expect: lines")
			}
			matchExpectations(t, c.expects, denials)
		})
	}
	if bad < 25 {
		t.Errorf("%d bad rule files, want at least 25 (one per distinct problem)", bad)
	}
}

// matchExpectations pairs every expectation with a distinct denial.
func matchExpectations(t *testing.T, want []expectation, got field.ErrorList) {
	t.Helper()
	used := make([]bool, len(got))
	for _, e := range want {
		found := false
		for i, g := range got {
			if !used[i] && g.Field == e.field && strings.Contains(g.Error(), e.msg) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("no denial at %s containing %q; got:\n%s", e.field, e.msg, listErrors(got))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d denials, want %d:\n%s", len(got), len(want), listErrors(got))
	}
}

func listErrors(errs field.ErrorList) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("  " + e.Error() + "\n")
	}
	return b.String()
}

func TestKubePrometheusRulesAreAdmitted(t *testing.T) {
	p := suitePolicy(t, "default")
	total := 0
	for _, c := range ruleCases(t) {
		if !strings.Contains(c.path, "kube-prometheus") {
			continue
		}
		rep := p.CheckPrometheusRule(c.rule, len(c.raw), Namespace{Name: "monitoring"})
		if d := rep.Denials(); len(d) > 0 {
			t.Errorf("%s denied: %v", c.path, d.ToAggregate())
		}
		total += rep.Checked
	}
	if total < 200 {
		t.Errorf("kube-prometheus corpus has %d rules, expected hundreds", total)
	}
}

func TestCheckPrometheusRuleDeterministic(t *testing.T) {
	p := suitePolicy(t, "default")
	for _, c := range ruleCases(t) {
		first := p.CheckPrometheusRule(c.rule, len(c.raw), Namespace{}).Findings
		for range 5 {
			again := p.CheckPrometheusRule(c.rule, len(c.raw), Namespace{}).Findings
			if len(again) != len(first) {
				t.Fatalf("%s: findings vary between runs", c.path)
			}
			for i := range again {
				if again[i].Err.Error() != first[i].Err.Error() {
					t.Fatalf("%s: finding %d varies: %q vs %q", c.path, i, again[i].Err, first[i].Err)
				}
			}
		}
	}
}

func TestRuleGateModes(t *testing.T) {
	c := ruleCases(t)
	var bad ruleCase
	for _, rc := range c {
		if strings.HasSuffix(rc.path, "promql-syntax.bad.yaml") {
			bad = rc
		}
	}
	p := suitePolicy(t, "default")
	if m := p.CheckPrometheusRule(bad.rule, len(bad.raw), Namespace{Name: "shop"}).Mode; m != ModeEnforce {
		t.Errorf("mode = %s, want enforce", m)
	}
	relaxed := Namespace{Name: "shop", Annotations: map[string]string{ModeAnnotation: "dry-run"}}
	if m := p.CheckPrometheusRule(bad.rule, len(bad.raw), relaxed).Mode; m != ModeDryRun {
		t.Errorf("mode in a dry-run namespace = %s, want dry-run", m)
	}
	if r := p.CheckPrometheusRule(bad.rule, len(bad.raw), Namespace{Name: "kube-system"}); r.Reason == "" || len(r.Findings) > 0 {
		t.Errorf("kube-system was checked: %+v", r)
	}
}

// TestTextTemplateBuiltins: every name parseAlertTemplate takes for a
// builtin is one to text/template, and nothing else is defined there.
func TestTextTemplateBuiltins(t *testing.T) {
	for _, name := range textTemplateBuiltins {
		if _, err := texttemplate.New("").Parse("{{ " + name + " }}"); err != nil {
			t.Errorf("%s is not a text/template builtin: %v", name, err)
		}
	}
	if _, err := texttemplate.New("").Parse("{{ humanise }}"); err == nil {
		t.Error("an unknown function parses: the probe above proves nothing")
	}
}

// TestRequireLevels: rules.require conventions deny by default (their
// meaning before they had levels), warn at level warn, and a per-convention
// level overrides the section's.
func TestRequireLevels(t *testing.T) {
	rule := &monv1.PrometheusRule{Spec: monv1.PrometheusRuleSpec{Groups: []monv1.RuleGroup{{Name: "g", Rules: []monv1.Rule{
		{Alert: "NoSeverity", Expr: intstr.FromString("up == 0")},
		{Alert: "Major", Expr: intstr.FromString("up == 0"), Labels: map[string]string{"severity": "major"}, Annotations: map[string]string{"summary": "s"}},
	}}}}}
	levelsOf := func(rep Report) map[string]Level {
		out := map[string]Level{}
		for _, f := range rep.Findings {
			out[f.Check] = f.Level
		}
		return out
	}
	for _, tt := range []struct {
		name, require string
		want          map[string]Level
	}{
		{"conventions without a level deny", "", map[string]Level{CheckAlertLabels: LevelDeny, CheckAnnotations: LevelDeny, CheckSeverity: LevelDeny}},
		{"level warn makes every convention a warning", "    level: warn\n", map[string]Level{CheckAlertLabels: LevelWarn, CheckAnnotations: LevelWarn, CheckSeverity: LevelWarn}},
		{"a per-convention level overrides the section's", "    level: warn\n    levels: {alertAnnotations: deny}\n", map[string]Level{CheckAlertLabels: LevelWarn, CheckAnnotations: LevelDeny, CheckSeverity: LevelWarn}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, "apiVersion: promenroll.io/v1alpha1\nkind: Policy\nrules:\n  require:\n    alertLabels: [severity]\n    alertAnnotations: [summary]\n    severityValues: [critical, warning]\n"+tt.require)
			if got := levelsOf(p.CheckPrometheusRule(rule, 100, Namespace{Name: "shop"})); !maps.Equal(got, tt.want) {
				t.Errorf("levels by check = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := Parse("policy.yaml", []byte("apiVersion: promenroll.io/v1alpha1\nkind: Policy\nrules:\n  require:\n    level: off\n"), Options{}); err == nil || !strings.Contains(err.Error(), "rules.require.level") {
		t.Errorf("level off (use an empty list to drop a convention) accepted or not named: %v", err)
	}
}
