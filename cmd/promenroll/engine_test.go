package main

import (
	"fmt"
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
	kinds := auditedKinds()
	for _, gk := range append(policy.MutatedKinds(), policy.GatedKinds()...) {
		if !slices.Contains(kinds, gk) {
			t.Errorf("audit does not list %s", gk)
		}
	}
	var input strings.Builder
	input.WriteString(shopNamespace)
	for _, gk := range kinds {
		gvk := schema.FromAPIVersionAndKind(apiVersionOf(gk), gk.Kind)
		if errs := validateSchema(gvk, []byte(`{"apiVersion":"`+gvk.GroupVersion().String()+`","kind":"`+gk.Kind+`","metadata":{"name":"x","namespace":"shop"}}`)); len(errs) > 0 && errs[0].Field == "apiVersion" {
			t.Errorf("%s is listed as %s, which the API server does not serve: %v", gk, apiVersionOf(gk), errs)
		}
		fmt.Fprintf(&input, "---\napiVersion: %s\nkind: %s\nmetadata: {name: every, namespace: shop, labels: {app.kubernetes.io/name: every}}\n", apiVersionOf(gk), gk.Kind)
		if gk.Group == groupMonitoring {
			input.WriteString(minimalSpec[gk.Kind])
		}
	}
	out, _, _ := checkRun(t, input.String(), "--policy", examplePolicy, "-")
	for _, gk := range kinds {
		want := "would add metadata.labels monitoring.promenroll.io/scrape=true"
		if gk.Group == groupMonitoring {
			want = "would add metadata.labels release=kube-prometheus-stack"
		}
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, " "+gk.Kind+" shop/every: would add") {
				line = l
			}
		}
		if !strings.Contains(line, want) {
			t.Errorf("check did not send %s through the mutation table (want %q):\n%s", gk, want, out)
		}
	}
}

// minimalSpec is the least spec each monitoring kind's CRD schema admits.
var minimalSpec = map[string]string{
	"PodMonitor":     "spec: {selector: {}, podMetricsEndpoints: [{port: metrics}]}\n",
	"Probe":          "spec: {}\n",
	"PrometheusRule": "spec: {groups: []}\n",
	"ScrapeConfig":   "spec: {}\n",
	"ServiceMonitor": "spec: {selector: {}, endpoints: [{port: metrics}]}\n",
}
