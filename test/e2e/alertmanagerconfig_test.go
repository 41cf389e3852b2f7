package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAlertmanagerConfigGate: through a real kube-apiserver with the
// operator's CRDs (which serve v1alpha1; v1beta1 needs a conversion webhook
// on the CRD, and the policy tests judge it), an AlertmanagerConfig the
// operator would drop is refused with every problem at its field path, and
// a valid one is stored.
func TestAlertmanagerConfigGate(t *testing.T) {
	createNamespace(t, "shop", nil, nil)
	dir := filepath.Join(c.Root, "policy", "testdata", "alertmanagerconfigs")
	t.Run("four problems: all four are named", func(t *testing.T) {
		bad, err := os.ReadFile(filepath.Join(dir, "v1alpha1-many-problems.bad.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		out, errOut, err := c.Kubectl(t.Context(), string(bad), "apply", "-f", "-")
		if err == nil {
			t.Fatalf("the AlertmanagerConfig was admitted:\n%s", out)
		}
		for _, want := range []string{
			`The AlertmanagerConfig "shop" is invalid`,
			`* spec.receivers[0]: Invalid value: failed to validate receiver "slack": 'emailConfigs'[0]: missing 'to' address`,
			`* spec.receivers[1]: Invalid value: failed to validate receiver "hooks": 'webhookConfigs'[0]: invalid 'url'`,
			"* spec.muteTimeIntervals[0]: Invalid value: time range at 0 is invalid: start time 1320 cannot be equal or greater than end time 360",
			`* spec.route.routes[1]: Invalid value: receiver "pager" not found`,
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("kubectl's message does not contain %q:\n%s", want, errOut)
			}
		}
	})
	t.Run("a route naming a missing receiver is refused", func(t *testing.T) {
		bad, err := os.ReadFile(filepath.Join(dir, "v1alpha1-route-unknown-receiver.bad.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		_, errOut, err := c.Kubectl(t.Context(), string(bad), "apply", "-f", "-")
		if err == nil || !strings.Contains(errOut, `The AlertmanagerConfig "shop" is invalid: spec.route: Invalid value: receiver "email" not found`) {
			t.Errorf("want refused at spec.route; err %v, stderr:\n%s", err, errOut)
		}
	})
	t.Run("a regular expression Alertmanager cannot compile is refused, though the operator's webhook admits it", func(t *testing.T) {
		bad, err := os.ReadFile(filepath.Join(dir, "v1alpha1-bad-matcher-regex.bad.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		_, errOut, err := c.Kubectl(t.Context(), string(bad), "apply", "-f", "-")
		if err == nil || !strings.Contains(errOut, `spec.route.routes[0].matchers[0].value: Invalid value: "Checkout(": Alertmanager cannot compile this regular expression`) {
			t.Errorf("want refused at the matcher; err %v, stderr:\n%s", err, errOut)
		}
	})
	for _, good := range []string{"v1alpha1-team-routing.good.yaml"} {
		t.Run(good+" is stored", func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, good))
			if err != nil {
				t.Fatal(err)
			}
			out, errOut := kubectl(t, string(data), "apply", "-f", "-")
			if !strings.Contains(out, "alertmanagerconfig.monitoring.coreos.com/shop") || strings.Contains(errOut, "Warning") {
				t.Errorf("want stored without a warning; stdout %q stderr %q", out, errOut)
			}
		})
	}
}
