// Package e2e drives the real promenroll binary through a real
// kube-apiserver: webhook configurations from deploy/ as they are, the real
// kubectl, client-go. `make test-e2e` (and `make test`) builds the control
// plane binaries first.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/promenroll/promenroll/test/cluster"
)

var (
	c          *cluster.Cluster
	policyFile string
	logs       = &syncBuffer{}
)

const basePolicy = `apiVersion: promenroll.io/v1alpha1
kind: Policy
excludeNamespaces: [legacy, diff-excluded]
enroll:
- name: services
  kinds: [Service]
  selector: {matchExpressions: [{key: app.kubernetes.io/name, operator: Exists}]}
  labels:
    monitoring.promenroll.io/scrape: "true"
    team: "{namespaceLabel:team}"
- name: workloads
  kinds: [Deployment, StatefulSet, DaemonSet, Job, CronJob]
  labels:
    monitoring.promenroll.io/scrape: "true"
  podTemplateLabels:
    monitoring.promenroll.io/scrape: "true"
- name: envoy
  kinds: [Deployment]
  selector: {matchLabels: {app.kubernetes.io/name: envoy}}
  labels:
    monitoring.promenroll.io/scrape: "true"
  podTemplateLabels:
    monitoring.promenroll.io/scrape: "true"
  scrape: {port: admin, path: /stats/prometheus}
- name: parts
  kinds: [Deployment, StatefulSet]
  selector: {matchLabels: {app.kubernetes.io/part-of: shop}}
  labels:
    shop.example/component: "{label:app.kubernetes.io/name}"
    shop.example/team: "{namespaceLabel:team}"
monitors:
  labels: {release: kube-prometheus-stack}
rules:
  require:
    alertLabels: [severity]
    severityValues: [critical, warning, info, none]
`

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "promenroll-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	policyFile = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(basePolicy), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err = cluster.Start(ctx, cluster.Options{PolicyFile: policyFile, Log: logs})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start cluster:", err)
		fmt.Fprintln(os.Stderr, logs.String())
		return 1
	}
	code := m.Run()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "--- promenroll and control plane output ---")
		fmt.Fprintln(os.Stderr, logs.String())
		fmt.Fprintln(os.Stderr, c.LogTails(200))
	}
	c.Stop()
	if left := cluster.Leftovers(); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "e2e: left behind after Stop:", strings.Join(left, ", "))
		return 1
	}
	return code
}

// syncBuffer collects the subprocesses' output for failure reports.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
