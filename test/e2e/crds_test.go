package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/promenroll/promenroll/internal/testwait"
)

// TestLoaderInformersFollowTheCRDs: promenroll, started while the
// PrometheusAgent CRD is not served, picks it up when it appears, without a
// restart (serve runs with --crd-check-interval 1s here; 30s by default).
func TestLoaderInformersFollowTheCRDs(t *testing.T) {
	createNamespace(t, "crd-agents", nil, nil)
	createNamespace(t, "crd-apps", nil, nil)
	agent := `apiVersion: monitoring.coreos.com/v1alpha1
kind: PrometheusAgent
metadata: {name: edge, namespace: crd-agents}
spec:
  podMonitorSelector: {matchLabels: {agent: edge}}
  podMonitorNamespaceSelector: {}
`
	// A Prometheus that does not load the PodMonitor, so that promenroll has
	// something to compare with once the agent is gone.
	kubectl(t, agent+`---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: other, namespace: crd-agents}
spec:
  podMonitorSelector: {matchLabels: {team: other}}
`, "apply", "-f", "-")
	pm := `apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata: {name: edge-app, namespace: crd-apps, labels: {agent: edge}}
spec:
  selector: {matchLabels: {app: edge}}
  podMetricsEndpoints: [{port: metrics}]
`
	warned := func() bool {
		_, errOut, err := c.Kubectl(t.Context(), pm, "apply", "--dry-run=server", "-f", "-")
		if err != nil {
			t.Fatalf("dry-run: %v\n%s", err, errOut)
		}
		return strings.Contains(errOut, "no Prometheus will load this PodMonitor")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testwait.True(t, what, 60*time.Second, cond)
	}
	waitFor("the PrometheusAgent loads the PodMonitor (no warning)", func() bool { return !warned() })

	kubectl(t, "", "delete", "crd", "prometheusagents.monitoring.coreos.com", "--wait=true")
	waitFor("with the PrometheusAgent CRD gone, no loader is left (a warning)", warned)

	// promenroll starts while the CRD is not served: it must pick the CRD
	// up when it appears.
	c.StopWebhook()
	if err := c.StartWebhook(t.Context()); err != nil {
		t.Fatal(err)
	}

	crd, err := c.OperatorCRD(t.Context(), "prometheusagents")
	if err != nil {
		t.Fatal(err)
	}
	// create, not apply: the CRD is too large for the last-applied annotation.
	kubectl(t, "", "create", "-f", crd)
	waitFor("the CRD is served again", func() bool {
		_, _, err := c.Kubectl(t.Context(), agent, "apply", "-f", "-")
		return err == nil
	})
	waitFor("with the CRD and the agent back, the PodMonitor is loaded again (no warning)", func() bool { return !warned() })
}
