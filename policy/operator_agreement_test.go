package policy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stricterThanTheOperator lists the testdata monitors promenroll denies and
// prometheus-operator's own checks accept, each with the reason. The test
// fails if one of them stops differing, so the list stays true.
var stricterThanTheOperator = map[string]string{
	"sm-unknown-action.bad.yaml":                "the CRD's enum refuses the action at the API server; promenroll refuses it too, so check agrees with kubectl apply",
	"pm-metric-relabel-unknown-action.bad.yaml": "the CRD's enum refuses the action at the API server; promenroll refuses it too, so check agrees with kubectl apply",
	"sm-no-endpoints.bad.yaml":                  "the operator generates nothing for it: a monitor without endpoints is a mistake promenroll names",
	"pm-no-endpoints.bad.yaml":                  "the operator generates nothing for it: a monitor without endpoints is a mistake promenroll names",
}

// TestMonitorVerdictsAgreeWithTheOperator: for every testdata monitor,
// promenroll's monitor gate denies exactly what prometheus-operator's own
// ResourceSelector rejects (bin/operator-verdicts, built from the operator
// module by `make test`), but for the listed stricter cases.
func TestMonitorVerdictsAgreeWithTheOperator(t *testing.T) {
	operator := operatorVerdicts(t, "testdata/monitors")
	p := mustParse(t, minimalPolicy)
	cases := monitorCases(t)
	if len(operator) != len(cases) {
		t.Fatalf("the operator judged %d files, promenroll has %d", len(operator), len(cases))
	}
	for _, c := range cases {
		rel, _ := filepath.Rel("testdata/monitors", c.path)
		rel = filepath.ToSlash(rel)
		opReason, ok := operator[rel]
		if !ok {
			t.Errorf("%s: no verdict from the operator", rel)
			continue
		}
		denied := len(checkMonitor(t, p, c.data).Denials()) > 0
		rejected := opReason != ""
		why, stricter := stricterThanTheOperator[filepath.Base(rel)]
		switch {
		case stricter && (denied && !rejected):
		case stricter:
			t.Errorf("%s is listed as stricter than the operator (%s), but promenroll denied=%v, operator rejected=%v: update the list", rel, why, denied, rejected)
		case denied != rejected:
			t.Errorf("%s: promenroll denied=%v, prometheus-operator rejected=%v (%s)", rel, denied, rejected, opReason)
		}
	}
}

// operatorVerdicts runs bin/operator-verdicts (prometheus-operator's own
// checks, built from its module by `make test`) on the testdata under dir:
// file (relative to dir) -> "" (valid) or the operator's reason.
func operatorVerdicts(t *testing.T, dir string) map[string]string {
	t.Helper()
	bin := filepath.Join("..", "bin", "operator-verdicts")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (make test builds it): %v", bin, err)
		}
		t.Skipf("%s not found: run `make bin/operator-verdicts` (make test does)", bin)
	}
	out, err := exec.Command(bin, dir).Output()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	operator := map[string]string{}
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		parts := strings.SplitN(line, "\t", 3)
		if len(parts) != 3 {
			t.Fatalf("unexpected line %q", line)
		}
		operator[filepath.ToSlash(parts[0])] = parts[2]
		if parts[1] == "invalid" && parts[2] == "" {
			operator[filepath.ToSlash(parts[0])] = "rejected"
		}
	}
	return operator
}
