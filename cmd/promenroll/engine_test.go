package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/promenroll/promenroll/policy"
)

// TestEveryKindOfTheTablesIsJudgedByCheckAndAudit: audit lists every kind
// of the mutation and gate tables in a version the API server serves (check's
// embedded schemas know it), and check sends each through the tables: a
// monitor or rule is labelled with monitors.labels, a workload or Service is
// enrolled.
func TestEveryKindOfTheTablesIsJudgedByCheckAndAudit(t *testing.T) {
	// The demo's policy, with Argo Rollouts declared and enrolled.
	example, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	const workloads = "kinds: [Deployment, StatefulSet, DaemonSet, Job, CronJob]"
	if !strings.Contains(string(example), workloads) {
		t.Fatalf("%s has no rule with %s", examplePolicy, workloads)
	}
	text := strings.Replace(string(example), workloads, "kinds: [Deployment, StatefulSet, DaemonSet, Job, CronJob, Rollout]", 1)
	text = strings.Replace(text, "monitors:\n", "monitors:\n  kinds: [ServiceMonitor, PodMonitor, PrometheusRule, Probe, ScrapeConfig, AlertmanagerConfig]\n", 1)
	text = strings.Replace(text, "enroll:\n", "kinds:\n- {apiVersion: argoproj.io/v1alpha1, kind: Rollout, resource: rollouts, podTemplate: spec.template}\nenroll:\n", 1)
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(policyFile, []byte(text), policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := auditedKinds(p)
	for _, gk := range append(p.MutatedKinds(), policy.GatedKinds()...) {
		if !slices.ContainsFunc(kinds, func(gvk schema.GroupVersionKind) bool { return gvk.GroupKind() == gk }) {
			t.Errorf("audit does not list %s", gk)
		}
	}
	if !slices.Contains(kinds, schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout"}) {
		t.Errorf("audit does not list the declared Rollout in its declared version: %v", kinds)
	}
	var input strings.Builder
	input.WriteString(shopNamespace)
	for _, gvk := range kinds {
		if errs := validateSchema(gvk, []byte(`{"apiVersion":"`+gvk.GroupVersion().String()+`","kind":"`+gvk.Kind+`","metadata":{"name":"x","namespace":"shop"}}`)); len(errs) > 0 && errs[0].Field == "apiVersion" {
			t.Errorf("%s is listed as %s, which the API server does not serve: %v", gvk.GroupKind(), gvk.GroupVersion(), errs)
		}
		fmt.Fprintf(&input, "---\napiVersion: %s\nkind: %s\nmetadata: {name: every, namespace: shop, labels: {app.kubernetes.io/name: every}}\n", gvk.GroupVersion(), gvk.Kind)
		if gvk.Group == groupMonitoring {
			input.WriteString(minimalSpec[gvk.Kind])
		}
	}
	out, _, _ := checkRun(t, input.String(), "--policy", policyFile, "-")
	for _, gvk := range kinds {
		want := "would add metadata.labels monitoring.promenroll.io/scrape=true"
		if gvk.Group == groupMonitoring {
			want = "would add metadata.labels release=kube-prometheus-stack"
		}
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, " "+gvk.Kind+" shop/every: would add") {
				line = l
			}
		}
		if !strings.Contains(line, want) {
			t.Errorf("check did not send %s through the mutation table (want %q):\n%s", gvk.GroupKind(), want, out)
		}
	}
}

// minimalSpec is the least spec each monitoring kind's CRD schema admits.
var minimalSpec = map[string]string{
	"AlertmanagerConfig": "spec: {}\n",
	"PodMonitor":         "spec: {selector: {}, podMetricsEndpoints: [{port: metrics}]}\n",
	"Probe":              "spec: {}\n",
	"PrometheusRule":     "spec: {groups: []}\n",
	"ScrapeConfig":       "spec: {}\n",
	"ServiceMonitor":     "spec: {selector: {}, endpoints: [{port: metrics}]}\n",
}
