package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/promenroll/promenroll/internal/testwait"
)

// TestVersionWarningsNameTheOlderPrometheusOnly: two Prometheus objects
// load the same PrometheusRule, one at spec.version v2.41.0 and one at
// v3.5.0; a rule with keep_firing_for (Prometheus v2.42.0 and later) is
// stored with a warning naming the older one only.
func TestVersionWarningsNameTheOlderPrometheusOnly(t *testing.T) {
	createNamespace(t, "ver-old", nil, nil)
	createNamespace(t, "ver-new", nil, nil)
	createNamespace(t, "ver-apps", nil, nil)
	kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: old, namespace: ver-old}
spec:
  version: v2.41.0
  ruleSelector: {matchLabels: {team: versions}}
  ruleNamespaceSelector: {}
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: new, namespace: ver-new}
spec:
  version: v3.5.0
  ruleSelector: {matchLabels: {team: versions}}
  ruleNamespaceSelector: {}
`, "apply", "-f", "-")
	rule := `apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata: {name: flapping, namespace: ver-apps, labels: {team: versions}}
spec:
  groups:
  - name: api
    rules:
    - alert: APIDown
      expr: up{job="api"} == 0
      for: 5m
      keep_firing_for: 10m
      labels: {severity: critical}
      annotations: {summary: the API is down}
`
	const want = `Warning: spec.groups[0].rules[0].keep_firing_for: Invalid value: Prometheus ver-old/old runs Prometheus v2.41.0, older than v2.42.0`
	// promenroll's Prometheus informer sees the new objects shortly.
	var errOut string
	testwait.For(t, "the warning naming ver-old/old", 20*time.Second, func() (bool, error) {
		_, errOut = kubectl(t, rule, "apply", "--dry-run=server", "-f", "-")
		return strings.Contains(errOut, want), errors.New(errOut)
	})
	if strings.Contains(errOut, "ver-new/new") {
		t.Errorf("the v3.5.0 Prometheus is named too:\n%s", errOut)
	}
	out, _ := kubectl(t, rule, "apply", "-f", "-")
	if !strings.Contains(out, "prometheusrule.monitoring.coreos.com/flapping created") {
		t.Errorf("a version warning kept the rule out: %s", out)
	}
}
