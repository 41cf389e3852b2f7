package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/promenroll/promenroll/internal/testwait"
)

// replacePolicyFile replaces the policy file as a ConfigMap volume swap or
// an editor does: a new file renamed over the old one.
func replacePolicyFile(t *testing.T, doc string) {
	t.Helper()
	tmp := policyFile + ".new"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, policyFile); err != nil {
		t.Fatal(err)
	}
}

// setPolicy replaces the policy file and waits until ready(), bounded,
// says it is in force.
func setPolicy(t *testing.T, doc string, ready func() bool) {
	t.Helper()
	replacePolicyFile(t, doc)
	testwait.True(t, "the policy change is in force", 30*time.Second, ready)
}

// TestSelectionAcrossTwoPrometheuses: with a kube-prometheus-stack style
// Prometheus (release selector, every namespace) and a namespace-scoped
// team Prometheus, a ServiceMonitor neither loads is warned about with the
// nearest one's exact difference, and refused under monitors.unselected:
// deny; one the team Prometheus loads passes.
func TestSelectionAcrossTwoPrometheuses(t *testing.T) {
	createNamespace(t, "sel-prom", nil, nil)
	createNamespace(t, "sel-team", nil, nil)
	createNamespace(t, "sel-apps", nil, nil)
	kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: kps, namespace: sel-prom}
spec:
  serviceMonitorSelector: {matchLabels: {release: kube-prometheus-stack}}
  serviceMonitorNamespaceSelector: {}
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: team, namespace: sel-team}
spec:
  serviceMonitorSelector: {}
`, "apply", "-f", "-")
	// release: prom is kept (add-only), so the release selector misses it.
	other := `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: other-release, namespace: sel-apps, labels: {release: prom}}
spec:
  selector: {matchLabels: {app: api}}
  endpoints: [{port: metrics}]
`
	// Another test's Prometheus may be as near (same selectors): the
	// difference is what must be named.
	const why = "selects ServiceMonitors with release=kube-prometheus-stack; this one has release=prom"
	// Not t.Context(): the subtests' cleanups use it after t's context is
	// done.
	dryRun := func(doc string) (string, error) {
		_, errOut, err := c.Kubectl(context.Background(), doc, "apply", "--dry-run=server", "-f", "-")
		return errOut, err
	}

	t.Run("warn: the nearest Prometheus and the exact difference", func(t *testing.T) {
		// promenroll's Prometheus informer sees the new objects shortly.
		testwait.For(t, fmt.Sprintf("a selection warning naming %q", why), 20*time.Second, func() (bool, error) {
			errOut, err := dryRun(other)
			if err != nil {
				return false, err
			}
			if strings.Contains(errOut, "Warning: no Prometheus will load this ServiceMonitor: Prometheus ") && strings.Contains(errOut, why) {
				return true, nil
			}
			return false, errors.New(errOut)
		})
	})

	t.Run("the team Prometheus loads a monitor in its own namespace: nothing said", func(t *testing.T) {
		errOut, err := dryRun(strings.Replace(other, "namespace: sel-apps", "namespace: sel-team", 1))
		if err != nil || strings.Contains(errOut, "no Prometheus will load") {
			t.Errorf("err %v, stderr %s", err, errOut)
		}
	})

	t.Run("autoSelect: the labels the named Prometheus' live selector requires are added", func(t *testing.T) {
		kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: platform, namespace: sel-prom}
spec:
  serviceMonitorSelector: {matchLabels: {prometheus: platform}}
  serviceMonitorNamespaceSelector: {}
`, "apply", "-f", "-")
		auto := strings.Replace(basePolicy, "monitors:\n  labels: {release: kube-prometheus-stack}\n", "monitors:\n  labels: {release: kube-prometheus-stack}\n  autoSelect: sel-prom/platform\n", 1)
		if auto == basePolicy {
			t.Fatal("could not add monitors.autoSelect to the test policy")
		}
		plain := strings.NewReplacer("other-release", "auto", ", labels: {release: prom}", "").Replace(other)
		t.Cleanup(func() {
			// t.Context() is done when cleanups run.
			setPolicy(t, basePolicy, func() bool {
				out, _, err := c.Kubectl(context.Background(), plain, "apply", "--dry-run=server", "-o", "yaml", "-f", "-")
				return err == nil && !strings.Contains(out, "prometheus: platform")
			})
		})
		var out, errOut string
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("last dry-run:\n%s\n%s", out, errOut)
			}
		})
		setPolicy(t, auto, func() bool {
			var err error
			out, errOut, err = c.Kubectl(t.Context(), plain, "apply", "--dry-run=server", "-o", "yaml", "-f", "-")
			return err == nil && strings.Contains(out, "prometheus: platform")
		})
		if !strings.Contains(out, "release: kube-prometheus-stack") {
			t.Errorf("monitors.labels were not added beside autoSelect's:\n%s", out)
		}
	})

	t.Run("deny: monitors.unselected refuses it with the same explanation", func(t *testing.T) {
		denyPolicy := strings.Replace(basePolicy, "monitors:\n  labels: {release: kube-prometheus-stack}\n", "monitors:\n  labels: {release: kube-prometheus-stack}\n  unselected: deny\n", 1)
		if denyPolicy == basePolicy {
			t.Fatal("could not add monitors.unselected to the test policy")
		}
		t.Cleanup(func() {
			setPolicy(t, basePolicy, func() bool { _, err := dryRun(other); return err == nil })
		})
		var errOut string
		setPolicy(t, denyPolicy, func() bool {
			var err error
			errOut, err = dryRun(other)
			return err != nil
		})
		for _, want := range []string{`The ServiceMonitor "other-release" is invalid`, "metadata.labels", why, "monitors.unselected: deny"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("the refusal does not contain %q:\n%s", want, errOut)
			}
		}
		if errOut, err := dryRun(strings.Replace(other, "namespace: sel-apps", "namespace: sel-team", 1)); err != nil {
			t.Errorf("a monitor the team Prometheus loads was refused: %s", errOut)
		}
	})
}
