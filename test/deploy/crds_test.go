package deploy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/promenroll/promenroll/test/cluster"
)

// TestEmbeddedCRDsAreTheOperators: the CRDs `promenroll check` validates
// against (cmd/promenroll/crds) are byte for byte the operator's, at the
// version the e2e control plane installs (`make crds` regenerates them).
// The operator's module comes from the module proxy, like the tools.
func TestEmbeddedCRDsAreTheOperators(t *testing.T) {
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	crdDir := filepath.Join(root, "cmd", "promenroll", "crds")
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/prometheus-operator/prometheus-operator@"+cluster.PrometheusOperatorVersion)
	cmd.Dir = t.TempDir() // outside any module
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %v %s", err, jerr, mod.Error)
	}
	entries, err := os.ReadDir(crdDir)
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
		embedded, err := gunzip(filepath.Join(crdDir, e.Name()))
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
	if n != 6 {
		t.Errorf("%d embedded CRDs, want 6 (servicemonitors, podmonitors, probes, scrapeconfigs, prometheusrules, alertmanagerconfigs)", n)
	}
}

func gunzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// TestShippedOpenReportsCRDIsTheModules: the Report CRD shipped in
// deploy/components/openreports and the chart is byte for byte the one of
// the reports-api module whose types promenroll writes.
func TestShippedOpenReportsCRDIsTheModules(t *testing.T) {
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "mod", "download", "-json", "github.com/openreports/reports-api@"+openReportsVersion(t, root))
	cmd.Dir = t.TempDir()
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		t.Fatalf("go mod download: %v %v %s", err, jerr, mod.Error)
	}
	upstream, err := os.ReadFile(filepath.Join(mod.Dir, "config", "crd", "openreports.io_reports.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"deploy/components/openreports/openreports.io_reports.yaml", "charts/promenroll/files/openreports.io_reports.yaml"} {
		shipped, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(shipped, upstream) {
			t.Errorf("%s differs from the reports-api module's config/crd/openreports.io_reports.yaml: copy it again", p)
		}
	}
}

// openReportsVersion is the reports-api version the product's go.mod pins.
func openReportsVersion(t *testing.T, root string) string {
	t.Helper()
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/openreports/reports-api" {
			return f[1]
		}
	}
	t.Fatal("go.mod does not require github.com/openreports/reports-api")
	return ""
}
