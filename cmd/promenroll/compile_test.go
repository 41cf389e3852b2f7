package main

import (
	"os"
	"strings"
	"testing"

	"github.com/promenroll/promenroll/policy"
)

// compileRun runs `promenroll compile` with stdin; the error returned is
// at the end of stderr, as main prints it.
func compileRun(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	out, errOut, err := cliRun(t, stdin, append([]string{"compile"}, args...)...)
	if err != nil {
		errOut += err.Error()
	}
	return out, errOut, exitCode(err)
}

// TestCompileReadsThePolicyConfigMapHelmRenders: the policy ConfigMap, as
// `helm template -s templates/configmap.yaml` prints it on standard input,
// compiles to the same bytes as the policy file it holds; --chart names
// the objects with the tokens the chart replaces.
func TestCompileReadsThePolicyConfigMapHelmRenders(t *testing.T) {
	doc, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, errOut, code := compileRun(t, "", "--policy", examplePolicy)
	if code != 0 {
		t.Fatalf("compile --policy %s: exit %d: %s", examplePolicy, code, errOut)
	}
	var cm strings.Builder
	cm.WriteString("---\n# Source: promenroll/templates/configmap.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: promenroll-policy\ndata:\n  policy.yaml: |\n")
	for _, l := range strings.Split(strings.TrimSuffix(string(doc), "\n"), "\n") {
		cm.WriteString("    " + l + "\n")
	}
	cm.WriteString("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: promenroll-client-ca\ndata:\n  ca.crt: x\n")
	fromStdin, errOut, code := compileRun(t, cm.String(), "--policy", "-")
	if code != 0 {
		t.Fatalf("compile --policy - (a ConfigMap): exit %d: %s", code, errOut)
	}
	if fromStdin != fromFile {
		t.Errorf("the ConfigMap's policy compiled differently from the file:\n%s\n---\n%s", fromStdin, fromFile)
	}
	chart, _, code := compileRun(t, cm.String(), "--policy", "-", "--chart")
	if code != 0 || !strings.Contains(chart, "name: "+policy.ChartNameToken+"-enroll-") || !strings.Contains(chart, "- "+policy.ChartNamespaceToken+"\n") {
		t.Errorf("--chart: exit %d, want the chart's tokens:\n%.600s", code, chart)
	}
	if !strings.Contains(fromFile, "\nkind: ValidatingAdmissionPolicy\n") {
		t.Error("compile prints no warnings policy")
	}
	quiet, _, code := compileRun(t, "", "--policy", examplePolicy, "--warnings=false")
	if code != 0 || strings.Contains(quiet, "ValidatingAdmissionPolicy") || strings.Count(quiet, "\nkind: MutatingAdmissionPolicy\n") != strings.Count(fromFile, "\nkind: MutatingAdmissionPolicy\n") {
		t.Errorf("--warnings=false: exit %d, want the same mutating policies and no warnings policy:\n%.400s", code, quiet)
	}
	if _, errOut, code := compileRun(t, "kind: ConfigMap\ndata:\n  policy.yaml: |\n    kind: Nope\n", "--policy", "-"); code == 0 || !strings.Contains(errOut, "standard input (document 1, ConfigMap , data[policy.yaml])") {
		t.Errorf("an invalid policy in a ConfigMap: exit %d, want an error naming where it was read: %s", code, errOut)
	}
}
