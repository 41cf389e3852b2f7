package webhook

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// configMapDir lays out a folder the way the kubelet mounts a ConfigMap:
// policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>/.
func configMapDir(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	writeConfigMapVersion(t, dir, "..2026_11_25_00_00_00.1", content)
	if err := os.Symlink("..2026_11_25_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
	return dir
}

func writeConfigMapVersion(t *testing.T, dir, version, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, version, "policy.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// swapConfigMap updates the mount as the kubelet does: a new version folder,
// a ..data_tmp symlink to it, renamed over ..data.
func swapConfigMap(t *testing.T, dir, version, content string) {
	t.Helper()
	writeConfigMapVersion(t, dir, version, content)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPolicyStoreFollowsAConfigMapSymlinkSwap(t *testing.T) {
	dir := configMapDir(t, testPolicy)
	m := NewMetrics(nil)
	store, err := NewPolicyStore(filepath.Join(dir, "policy.yaml"), policyOptions(), m)
	if err != nil {
		t.Fatal(err)
	}
	store.PollInterval = time.Hour // only file events may trigger the reload
	first := store.Policy()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Watch(ctx, logr.Discard()) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(50 * time.Millisecond) // the watch is set up

	swapConfigMap(t, dir, "..2026_11_25_00_01_00.2", strings.Replace(testPolicy, "kinds: [Service]", "kinds: [Service, Deployment]", 1))
	waitFor(t, "the reload of the swapped ConfigMap", func() bool { return store.Policy() != first })
	if got := store.Policy().Source.Enroll[1].Kinds; len(got) != 2 {
		t.Fatalf("new policy not in force: kinds %v", got)
	}
	if got := testutil.ToFloat64(m.PolicyReloads.WithLabelValues("success")); got != 2 {
		t.Errorf("successful loads = %v, want 2", got)
	}

	good := store.Policy()
	swapConfigMap(t, dir, "..2026_11_25_00_02_00.3", "apiVersion: promenroll.io/v1alpha1\nkind: Policy\nmode: sometimes\n")
	waitFor(t, "the failed reload to be counted", func() bool { return testutil.ToFloat64(m.PolicyReloads.WithLabelValues("error")) == 1 })
	if store.Policy() != good {
		t.Fatal("an invalid policy replaced the last good one")
	}
	if got := testutil.ToFloat64(m.PolicyInfo.WithLabelValues(good.Generation, "enforce")); got != 1 {
		t.Errorf("promenroll_policy_info for the policy in force = %v", got)
	}
}

func TestPolicyStorePollsWithoutFileEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := NewPolicyStore(path, policyOptions(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	first := store.Policy()
	if err := os.WriteFile(path, []byte(strings.Replace(testPolicy, "release: kube-prometheus-stack", "release: prom", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	changed, err := store.Reload(logr.Discard())
	if err != nil || !changed || store.Policy() == first {
		t.Fatalf("Reload() = %v, %v", changed, err)
	}
	if changed, _ := store.Reload(logr.Discard()); changed {
		t.Error("an unchanged file was reloaded")
	}
}
