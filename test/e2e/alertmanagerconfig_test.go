package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testwait"
)

// TestAlertmanagerConfigGate: through a real kube-apiserver with the
// operator's CRDs (which serve v1alpha1; v1beta1 needs a conversion webhook
// on the CRD, and the policy tests judge it), an AlertmanagerConfig the
// operator would drop is refused with every problem at its field path, and
// a valid one is stored.
func TestAlertmanagerConfigGate(t *testing.T) {
	createNamespace(t, amcNamespace, nil, nil)
	dir := filepath.Join(c.Root, "policy", "testdata", "alertmanagerconfigs")
	read := func(t *testing.T, name string) string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return inAMCNamespace(string(data))
	}
	t.Run("four problems: all four are named", func(t *testing.T) {
		bad := read(t, "v1alpha1-many-problems.bad.yaml")
		out, errOut, err := c.Kubectl(t.Context(), bad, "apply", "-f", "-")
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
		bad := read(t, "v1alpha1-route-unknown-receiver.bad.yaml")
		_, errOut, err := c.Kubectl(t.Context(), bad, "apply", "-f", "-")
		if err == nil || !strings.Contains(errOut, `The AlertmanagerConfig "shop" is invalid: spec.route: Invalid value: receiver "email" not found`) {
			t.Errorf("want refused at spec.route; err %v, stderr:\n%s", err, errOut)
		}
	})
	t.Run("a regular expression Alertmanager cannot compile is refused, though the operator's webhook admits it", func(t *testing.T) {
		bad := read(t, "v1alpha1-bad-matcher-regex.bad.yaml")
		_, errOut, err := c.Kubectl(t.Context(), bad, "apply", "-f", "-")
		if err == nil || !strings.Contains(errOut, `spec.route.routes[0].matchers[0].value: Invalid value: "Checkout(": Alertmanager cannot compile this regular expression`) {
			t.Errorf("want refused at the matcher; err %v, stderr:\n%s", err, errOut)
		}
	})
	for _, good := range []string{"v1alpha1-team-routing.good.yaml"} {
		t.Run(good+" is stored", func(t *testing.T) {
			data := read(t, good)
			out, errOut := kubectl(t, data, "apply", "-f", "-")
			if !strings.Contains(out, "alertmanagerconfig.monitoring.coreos.com/shop") || strings.Contains(errOut, "Warning") {
				t.Errorf("want stored without a warning; stdout %q stderr %q", out, errOut)
			}
		})
	}
	t.Run("a referenced Secret that does not exist is a warning, until it exists", func(t *testing.T) {
		amc := read(t, "v1alpha1-basic-auth.good.yaml")
		out, errOut := kubectl(t, amc, "apply", "-f", "-")
		want := `Warning: spec.receivers[0].webhookConfigs[0].httpConfig.basicAuth.password.name: Invalid value: "hooks-creds": no Secret hooks-creds in namespace ` + amcNamespace
		if !strings.Contains(out, "alertmanagerconfig.monitoring.coreos.com/shop") || !strings.Contains(errOut, want) {
			t.Errorf("want stored with the warning %q; stdout %q stderr %q", want, out, errOut)
		}
		kubectl(t, "apiVersion: v1\nkind: Secret\nmetadata: {name: hooks-creds, namespace: "+amcNamespace+"}\nstringData: {user: alerts, password: s3cret}\n", "apply", "-f", "-")
		// From promenroll's metadata-only cache: wait (bounded) until it
		// has seen the Secret.
		testwait.For(t, "no Secret warning once it exists", 20*time.Second, func() (bool, error) {
			_, errOut := kubectl(t, amc, "apply", "--dry-run=server", "-f", "-")
			return !strings.Contains(errOut, "Warning"), errors.New(errOut)
		})
	})
	t.Run("one that no Alertmanager selects is admitted with a warning naming the nearest one's selector", func(t *testing.T) {
		kubectl(t, `apiVersion: monitoring.coreos.com/v1
kind: Alertmanager
metadata: {name: main, namespace: `+amcNamespace+`}
spec:
  alertmanagerConfigSelector: {matchLabels: {alertmanagerConfig: main}}
  alertmanagerConfigNamespaceSelector: {}
`, "apply", "-f", "-")
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, _, _ = c.Kubectl(ctx, "", "delete", "alertmanager", "main", "-n", amcNamespace, "--wait=false")
		})
		good := read(t, "v1alpha1-team-routing.good.yaml")
		want := "Warning: no Alertmanager will load this AlertmanagerConfig: Alertmanager " + amcNamespace + "/main selects AlertmanagerConfigs with alertmanagerConfig=main; this one has no label alertmanagerConfig"
		// promenroll's Alertmanager informer sees the new object shortly.
		testwait.For(t, "the selection warning", 20*time.Second, func() (bool, error) {
			_, errOut := kubectl(t, good, "apply", "--dry-run=server", "-f", "-")
			return strings.Contains(errOut, want), errors.New(errOut)
		})
		labelled := strings.Replace(good, "  namespace: "+amcNamespace+"\n", "  namespace: "+amcNamespace+"\n  labels: {alertmanagerConfig: main}\n", 1)
		if _, errOut := kubectl(t, labelled, "apply", "--dry-run=server", "-f", "-"); strings.Contains(errOut, "Warning") {
			t.Errorf("the selected one is warned about:\n%s", errOut)
		}
	})
	t.Run("with the CRD's conversion pointed at promenroll, v1beta1 is served, judged and converted", func(t *testing.T) {
		serveV1beta1(t)
		bad := read(t, "v1beta1-many-problems.bad.yaml")
		_, errOut, err := c.Kubectl(t.Context(), bad, "apply", "-f", "-")
		if err == nil {
			t.Fatal("the v1beta1 AlertmanagerConfig was admitted")
		}
		for _, want := range []string{
			`* spec.receivers[0]: Invalid value: failed to validate receiver "slack": 'emailConfigs'[0]: missing 'to' address`,
			"* spec.timeIntervals[0]: Invalid value: time range at 0 is invalid",
			`* spec.route.routes[1]: Invalid value: receiver "pager" not found`,
		} {
			if !strings.Contains(errOut, want) {
				t.Errorf("kubectl's message does not contain %q:\n%s", want, errOut)
			}
		}
		good := read(t, "v1beta1-team-routing.good.yaml")
		kubectl(t, good, "apply", "-f", "-")
		// Stored as v1alpha1 (the CRD's storage version): read in both.
		alpha, _ := kubectl(t, "", "get", "alertmanagerconfigs.v1alpha1.monitoring.coreos.com", "shop", "-n", amcNamespace, "-o", "jsonpath={.spec.muteTimeIntervals[0].name}")
		beta, _ := kubectl(t, "", "get", "alertmanagerconfigs.v1beta1.monitoring.coreos.com", "shop", "-n", amcNamespace, "-o", "jsonpath={.spec.timeIntervals[0].name}")
		if alpha != "business-hours" || beta != "business-hours" {
			t.Errorf("read as v1alpha1: muteTimeIntervals[0] %q; as v1beta1: timeIntervals[0] %q; want business-hours in both", alpha, beta)
		}
		// And the reverse: written as v1alpha1, read as v1beta1.
		kubectl(t, read(t, "v1alpha1-team-routing.good.yaml"), "apply", "-f", "-")
		beta, _ = kubectl(t, "", "get", "alertmanagerconfigs.v1beta1.monitoring.coreos.com", "shop", "-n", amcNamespace, "-o", "jsonpath={.spec.timeIntervals[0].name}")
		if beta != "nights" {
			t.Errorf("a v1alpha1 object read as v1beta1: timeIntervals[0] %q, want nights (its muteTimeIntervals[0])", beta)
		}
	})
}

// serveV1beta1 installs the operator's full AlertmanagerConfig CRD
// (v1alpha1 stored, v1beta1 served) with its conversion webhook pointed at
// the suite's promenroll, as docs/gates.md tells a CRD's owner to, and puts
// the stock CRD back at the end.
func serveV1beta1(t *testing.T) {
	t.Helper()
	stock, err := c.OperatorCRD(t.Context(), "alertmanagerconfigs")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(stock)), "prometheus-operator-crd-full", filepath.Base(stock)))
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(data, &crd); err != nil {
		t.Fatal(err)
	}
	ca, _, _ := c.WebhookCA()
	url := "https://" + c.WebhookAddr() + "/convert"
	crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.WebhookConverter,
		Webhook: &apiextensionsv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}, ClientConfig: &apiextensionsv1.WebhookClientConfig{URL: &url, CABundle: ca}}}
	js, err := json.Marshal(crd)
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, string(js), "apply", "--server-side", "--force-conflicts", "--field-manager=e2e-conversion", "-f", "-")
	t.Cleanup(func() {
		stockData, err := os.ReadFile(stock)
		if err != nil {
			t.Error(err)
			return
		}
		// t.Context() is done by now.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, errOut, err := c.Kubectl(ctx, string(stockData), "apply", "--server-side", "--force-conflicts", "--field-manager=e2e-conversion", "-f", "-"); err != nil {
			t.Errorf("put the stock CRD back: %v: %s", err, errOut)
		}
	})
	testwait.For(t, "v1beta1 AlertmanagerConfigs served", 30*time.Second, func() (bool, error) {
		_, errOut, err := c.Kubectl(t.Context(), "", "get", "alertmanagerconfigs.v1beta1.monitoring.coreos.com", "-n", amcNamespace)
		return err == nil, errors.New(errOut)
	})
}

// amcNamespace is this test's own namespace: the testdata's shop is
// TestKubectlApplyEnrollsWorkloadsAndServices'.
const amcNamespace = "alerting"

// inAMCNamespace moves a testdata object from shop to amcNamespace.
func inAMCNamespace(doc string) string {
	return strings.ReplaceAll(doc, "namespace: shop", "namespace: "+amcNamespace)
}
