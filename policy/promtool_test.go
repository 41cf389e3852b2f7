package policy

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtoolPath is bin/promtool, built by `make bin/promtool` from
// test/tools/promtool at the Prometheus version this module pins.
func promtoolPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("PROMTOOL")
	if p == "" {
		p = filepath.Join("..", "bin", "promtool")
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("promtool not found at %s (make test builds it): %v", p, err)
		}
		t.Skipf("promtool not found at %s: run `make bin/promtool` (make test does)", p)
	}
	return p
}

// requiredVersion reads the version of module mod required in a go.mod.
func requiredVersion(t *testing.T, gomod, mod string) string {
	t.Helper()
	f, err := os.Open(gomod)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "require "))
		if len(fields) >= 2 && fields[0] == mod {
			return fields[1]
		}
	}
	t.Fatalf("%s does not require %s", gomod, mod)
	return ""
}

// TestVerdictsAgreeWithPromtool checks, for every testdata rule file, that
// promenroll's structural verdict (would Prometheus load it?) equals
// `promtool check rules` of the same Prometheus version on the file the
// operator would generate from the object's spec. Convention findings
// (require, lint, size) are promenroll's own and not compared. The legacy
// suite is skipped: promtool check rules always validates names as UTF-8.
func TestVerdictsAgreeWithPromtool(t *testing.T) {
	promtool := promtoolPath(t)
	const mod = "github.com/prometheus/prometheus"
	if a, b := requiredVersion(t, "../go.mod", mod), requiredVersion(t, "../test/tools/promtool/go.mod", mod); a != b {
		t.Fatalf("promtool is built from %s %s but promenroll pins %s: update test/tools/promtool/go.mod", mod, b, a)
	}
	dir := t.TempDir()
	for _, c := range ruleCases(t) {
		if c.suite == "legacy" {
			continue
		}
		t.Run(c.path, func(t *testing.T) {
			p := suitePolicy(t, c.suite)
			structural := false
			for _, f := range p.CheckPrometheusRule(c.rule, len(c.raw), Namespace{}).Findings {
				structural = structural || f.Structural()
			}
			groups := c.rule.Spec.Groups
			for i := range groups {
				// Thanos-only; the operator drops it for Prometheus.
				groups[i].PartialResponseStrategy = ""
			}
			data, err := yaml.Marshal(map[string]any{"groups": groups})
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, strings.ReplaceAll(c.path, "/", "_"))
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(promtool, "check", "rules", "--lint=none", file).CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatal(err)
			}
			promtoolRefuses := err != nil
			if promtoolRefuses != structural {
				t.Errorf("promtool refuses=%v, promenroll structural problems=%v\npromtool says:\n%s", promtoolRefuses, structural, out)
			}
		})
	}
}
