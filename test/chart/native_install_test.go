package chart

import (
	"fmt"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

// testNativeInstall: `helm install` with policy.enrollment.engine native,
// and no promenroll process running at all (none is started: the chart's
// pods do not run on this control plane, which has no kubelet), so what
// enrolls is the API server with the policies the chart rendered: a
// Deployment created with the client is enrolled. A policy change (a team
// label from the namespace) is rolled out by `helm upgrade` with its
// compile as webhook.enroll.nativePolicies, and the next Deployment gets
// it. `helm uninstall` leaves no admission policy, and the next Deployment
// is not enrolled.
func testNativeInstall(t *testing.T, c *cluster.Cluster) {
	ctx := t.Context()
	const team = "native-team"
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team, Labels: map[string]string{"team": "payments"}}}); err != nil {
		t.Fatal(err)
	}
	native := map[string]any{"policy": map[string]any{"enrollment": map[string]any{"engine": "native"}}}
	start := time.Now()
	helmInstall(t, c, native, nil)

	// n creates the Deployment native-<n>, a fresh object each time, and
	// returns what the API server stored.
	n := 0
	create := func() *appsv1.Deployment {
		t.Helper()
		n++
		d := deployment(fmt.Sprintf("native-%d", n))
		d.Namespace = team
		if err := c.Client.Create(ctx, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	enrolled := func(d *appsv1.Deployment) bool {
		return d.Labels["monitoring.promenroll.io/scrape"] == "true" && d.Spec.Template.Labels["monitoring.promenroll.io/scrape"] == "true"
	}
	// until creates a Deployment a second until cond holds for it (at
	// most 30).
	until := func(what string, cond func(*appsv1.Deployment) bool) {
		t.Helper()
		if err := testwait.Poll(ctx, time.Second, 30*time.Second, func() (bool, error) { return cond(create()), nil }); err != nil {
			t.Fatalf("%s: not within 30s (%d Deployments created): %v", what, n, err)
		}
	}
	// The API server loads new admission policies within seconds.
	until("a Deployment enrolled by the API server with no promenroll running", enrolled)
	t.Logf("helm install to the first Deployment enrolled natively: %s", time.Since(start).Round(100*time.Millisecond))

	// helm upgrade with a new rule, compiled for the chart.
	teamRule := map[string]any{"name": "team", "kinds": []any{"Deployment"}, "labels": map[string]any{"team": "{namespaceLabel:team}"}, "podTemplateLabels": map[string]any{"team": "{namespaceLabel:team}"}}
	upgraded := map[string]any{"policy": map[string]any{"enrollment": map[string]any{"engine": "webhook"}, "enroll": append(defaultEnroll(t), teamRule)}}
	compiled := compileForChart(t, renderedPolicy(t, mustRender(t, upgraded)))
	upgraded["policy"].(map[string]any)["enrollment"] = map[string]any{"engine": "native"}
	upgraded["webhook"] = map[string]any{"enroll": map[string]any{"nativePolicies": string(compiled)}}
	upgrade := action.NewUpgrade(helmConfig(t, c.Kubeconfig))
	upgrade.Namespace = namespace
	upgrade.WaitStrategy = kube.HookOnlyStrategy
	res, err := upgrade.RunWithContext(ctx, "promenroll", loadChart(t), upgraded)
	if err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	rel := res.(*releasev1.Release)
	until("a Deployment gets the upgraded policy's team label", func(d *appsv1.Deployment) bool {
		return enrolled(d) && d.Labels["team"] == "payments" && d.Spec.Template.Labels["team"] == "payments"
	})

	if err := uninstall(t, c); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	assertNothingLeft(t, c, rel.Manifest)
	var mps admissionregistrationv1.MutatingAdmissionPolicyList
	if err := c.Client.List(ctx, &mps); err != nil {
		t.Fatal(err)
	}
	for _, mp := range mps.Items {
		t.Errorf("MutatingAdmissionPolicy %s left after uninstall", mp.Name)
	}
	var bindings admissionregistrationv1.MutatingAdmissionPolicyBindingList
	if err := c.Client.List(ctx, &bindings); err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings.Items {
		t.Errorf("MutatingAdmissionPolicyBinding %s left after uninstall", b.Name)
	}
	until("a Deployment no longer enrolled after uninstall", func(d *appsv1.Deployment) bool { return !enrolled(d) })
}

// defaultEnroll is the chart's default policy's enroll rules.
func defaultEnroll(t *testing.T) []any {
	t.Helper()
	vals := loadChart(t).Values
	rules, ok := vals["policy"].(map[string]any)["enroll"].([]any)
	if !ok || len(rules) == 0 {
		t.Fatal("the chart's default policy has no enroll rules")
	}
	return rules
}
