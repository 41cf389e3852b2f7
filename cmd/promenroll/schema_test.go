package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promenroll/promenroll/test/cluster"
)

// TestEmbeddedCRDsAreTheOperators: the CRDs check validates against are
// byte for byte the operator's, at the version the e2e control plane
// installs (`make crds` regenerates them).
func TestEmbeddedCRDsAreTheOperators(t *testing.T) {
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator@"+cluster.PrometheusOperatorVersion)
	cmd.Dir = t.TempDir() // outside any module
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %v %s", err, jerr, mod.Error)
	}
	entries, err := crdFiles.ReadDir("crds")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		kind, ok := strings.CutSuffix(e.Name(), ".yaml.gz")
		if !ok {
			continue
		}
		n++
		embedded, err := crdBytes(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		upstream, err := os.ReadFile(filepath.Join(mod.Dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(embedded, upstream) {
			t.Errorf("crds/%s differs from prometheus-operator %s: run make crds", e.Name(), cluster.PrometheusOperatorVersion)
		}
	}
	if n != 5 {
		t.Errorf("%d embedded CRDs, want 5 (servicemonitors, podmonitors, probes, scrapeconfigs, prometheusrules)", n)
	}
}
