package policystore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/policy"
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

const testPolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
enroll:
- name: workloads
  kinds: [Deployment, StatefulSet, DaemonSet]
  labels:
    monitoring.promenroll.io/scrape: "true"
- name: services
  kinds: [Service]
  labels:
    monitoring.promenroll.io/scrape: "true"
monitors:
  labels: {release: kube-prometheus-stack}
`

func policyOptions() policy.Options { return policy.Options{OwnNamespace: "promenroll-system"} }

func TestStoreFollowsAConfigMapSymlinkSwap(t *testing.T) {
	dir := configMapDir(t, testPolicy)
	m := NewMetrics(nil)
	store, err := New(filepath.Join(dir, "policy.yaml"), policyOptions(), m)
	if err != nil {
		t.Fatal(err)
	}
	store.PollInterval = time.Hour // only file events may trigger the reload
	store.watching = make(chan struct{})
	first := store.Policy()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Watch(ctx, logr.Discard()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch() = %v", err)
		}
	})
	select {
	case <-store.watching:
	case err := <-done:
		t.Fatalf("Watch() = %v before watching", err)
	}

	swapConfigMap(t, dir, "..2026_11_25_00_01_00.2", strings.Replace(testPolicy, "kinds: [Service]", "kinds: [Service, Deployment]", 1))
	testwait.True(t, "the reload of the swapped ConfigMap", 10*time.Second, func() bool { return store.Policy() != first })
	if got := store.Policy().Source.Enroll[1].Kinds; len(got) != 2 {
		t.Fatalf("new policy not in force: kinds %v", got)
	}
	if got := testutil.ToFloat64(m.Reloads.WithLabelValues("success")); got != 2 {
		t.Errorf("successful loads = %v, want 2", got)
	}

	good := store.Policy()
	swapConfigMap(t, dir, "..2026_11_25_00_02_00.3", "apiVersion: promenroll.io/v1alpha1\nkind: Policy\nmode: sometimes\n")
	testwait.True(t, "the failed reload to be counted", 10*time.Second, func() bool { return testutil.ToFloat64(m.Reloads.WithLabelValues("error")) == 1 })
	if store.Policy() != good {
		t.Fatal("an invalid policy replaced the last good one")
	}
	if got := testutil.ToFloat64(m.Info.WithLabelValues(good.Generation, "enforce")); got != 1 {
		t.Errorf("promenroll_policy_info for the policy in force = %v", got)
	}
}

// A volume whose changes raise no inotify event (some network and FUSE
// filesystems) is still followed: the loop re-reads the file on every
// poll tick.
func TestStorePollsWithoutFileEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(testPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := New(path, policyOptions(), NewMetrics(nil))
	if err != nil {
		t.Fatal(err)
	}
	first := store.Policy()
	ticks := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { store.follow(ctx, logr.Discard(), nil, nil, ticks); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	if err := os.WriteFile(path, []byte(strings.Replace(testPolicy, "release: kube-prometheus-stack", "release: prom", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	// The loop is sequential: once it takes the second tick, the first
	// tick's reload has finished.
	ticks <- time.Time{}
	ticks <- time.Time{}
	second := store.Policy()
	if second == first || second.Source.Monitors.Labels["release"] != "prom" {
		t.Fatalf("the policy was not reloaded on the poll tick: monitors.labels %v", second.Source.Monitors.Labels)
	}
	ticks <- time.Time{}
	ticks <- time.Time{}
	if store.Policy() != second {
		t.Error("an unchanged file was reloaded")
	}
}
