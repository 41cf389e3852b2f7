package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/promenroll/promenroll/policy"
)

func TestServiceProxyReachesTheGoverningServicePortWeb(t *testing.T) {
	for _, tc := range []struct{ api, want string }{
		{"http://prometheus-operated.monitoring.svc:9090", "https://api:6443/api/v1/namespaces/monitoring/services/http:prometheus-operated:web/proxy/"},
		{"https://prometheus-operated.monitoring.svc:9090/prom", "https://api:6443/api/v1/namespaces/monitoring/services/https:prometheus-operated:web/proxy/prom"},
	} {
		if got := serviceProxy("https://api:6443/", policy.PrometheusSelectors{Namespace: "monitoring", Name: "k8s", APIURL: tc.api}); got != tc.want {
			t.Errorf("serviceProxy(%s) = %s, want %s", tc.api, got, tc.want)
		}
	}
}

func TestStatusRefusesWhatItCannotReportOn(t *testing.T) {
	for _, args := range [][]string{{"status", "pod/x"}, {"status", "deployment"}, {"status", "deployment/"}, {"status", "deploy/x", "-o", "yaml"}, {"status"}} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		if exitCode(err) != exitError || !strings.Contains(err.Error(), "run 'promenroll status --help'") && !strings.Contains(err.Error(), "want KIND/NAME") && !strings.Contains(err.Error(), "--output") {
			t.Errorf("%v: exit %d, %v", args, exitCode(err), err)
		}
	}
}

func TestPrintStatusShowsTheChainAndTheTargets(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, policy.StatusResult{Subject: policy.Subject{Kind: "Deployment", Namespace: "shop", Name: "checkout"}, Outcome: policy.OutcomeFail,
		Message:    "1 of 2 targets down in Prometheus monitoring/k8s: http://10.0.0.2:9090/metrics: connection refused",
		Properties: map[string]string{"enrollment": "enrolled by rule workloads", "monitors": "PodMonitor promenroll-system/promenroll-workloads", "prometheus": "monitoring/k8s"},
		Targets:    []policy.TargetStatus{{Health: "up", URL: "http://10.0.0.1:9090/metrics"}, {Health: "down", URL: "http://10.0.0.2:9090/metrics", LastError: "connection refused"}}})
	want := `Deployment shop/checkout
  policy:     enrolled by rule workloads
  monitors:   PodMonitor promenroll-system/promenroll-workloads
  prometheus: monitoring/k8s
  targets:    up    http://10.0.0.1:9090/metrics
              down  http://10.0.0.2:9090/metrics: connection refused
  result:     fail: 1 of 2 targets down in Prometheus monitoring/k8s: http://10.0.0.2:9090/metrics: connection refused
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
