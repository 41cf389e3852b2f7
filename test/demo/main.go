// Command demo runs promenroll against a real local control plane (etcd,
// kube-apiserver and kube-controller-manager built from their Go modules)
// with the real Prometheus Operator and Prometheus, applies examples/ with
// the real kubectl, and tells what happened, down to what Prometheus
// scrapes and which rules it loaded. `make demo`; `make demo
// ARGS=--once` exits after the account instead of waiting for Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

func main() {
	once := flag.Bool("once", false, "exit after the account instead of serving until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, *once)
	if left := cluster.Leftovers(); len(left) > 0 {
		fmt.Fprintln(os.Stderr, "demo: left behind after stopping:", strings.Join(left, ", "))
		os.Exit(1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, once bool) error {
	root, err := cluster.RepoRoot()
	if err != nil {
		return err
	}
	logPath := filepath.Join(os.TempDir(), "promenroll-demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	fmt.Println("promenroll demo: starting etcd, kube-apiserver and promenroll on 127.0.0.1 (about 10 seconds)...")
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{PolicyFile: filepath.Join(root, "examples", "policy.yaml"), Log: logFile})
	if err != nil {
		return fmt.Errorf("%w (logs: %s)", err, logPath)
	}
	defer c.Stop()
	fmt.Printf("ready in %s: webhook configurations from deploy/base/webhooks.yaml, policy examples/policy.yaml\n", time.Since(start).Round(time.Second))

	fmt.Println("starting kube-controller-manager, the Prometheus Operator and Prometheus (about 20 seconds)...")
	m, err := c.Monitoring(ctx)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, c.LogTails(30))
	}
	for _, part := range slices.Sorted(maps.Keys(m.Started)) {
		fmt.Printf("  %s: %s\n", part, m.Started[part].Round(100*time.Millisecond))
	}
	if m.PodNetworkNote != "" {
		fmt.Printf("  Pod IPs are on 127.0.0.N, so Services get no endpoints: %s\n", m.PodNetworkNote)
	}

	d := &demo{ctx: ctx, c: c, root: root}
	defer func() {
		if d.reporter != nil {
			d.reporter.Stop()
		}
	}()
	d.stepArgs("The enrollment monitors promenroll ships (deploy/base/monitors)", "apply", "-k", filepath.Join(root, "deploy", "base", "monitors"))
	d.step("Namespaces: shop (monitoring: enabled, team: payments) and sandbox (annotated promenroll.io/mode: dry-run)", "namespaces.yaml")

	d.step("A Deployment without any monitoring label", "deployment.yaml")
	var dep appsv1.Deployment
	if d.get(client.ObjectKey{Namespace: "shop", Name: "checkout"}, &dep) {
		d.say("labels as stored:              %s", labels(dep.Labels))
		d.say("pod template labels as stored: %s", labels(dep.Spec.Template.Labels))
		d.say("spec.selector, untouched:      %s", labels(dep.Spec.Selector.MatchLabels))
	}

	d.step("A Service", "service.yaml")
	var svc corev1.Service
	if d.get(client.ObjectKey{Namespace: "shop", Name: "checkout"}, &svc) {
		d.say("labels as stored: %s", labels(svc.Labels))
	}

	d.step("Applying the same Deployment again", "deployment.yaml")

	d.step("A valid PrometheusRule", "prometheusrule-good.yaml")
	var pr monv1.PrometheusRule
	if d.get(client.ObjectKey{Namespace: "shop", Name: "checkout"}, &pr) {
		d.say("labels as stored: %s (the label kube-prometheus-stack's Prometheus selects)", labels(pr.Labels))
	}

	d.step("A PrometheusRule with a PromQL typo, a severity the cluster does not use, and a template typo", "prometheusrule-bad.yaml")

	d.step("A Deployment in the dry-run namespace", "sandbox-deployment.yaml")
	var exp appsv1.Deployment
	if d.get(client.ObjectKey{Namespace: "sandbox", Name: "experiment"}, &exp) {
		d.say("labels as stored: %s (dry-run: reported, not changed)", labels(exp.Labels))
	}

	d.step("An envoy gateway: the policy's envoy rule sets its scrape port and path", "gateway.yaml")
	var gw appsv1.Deployment
	if d.get(client.ObjectKey{Namespace: "shop", Name: "gateway"}, &gw) {
		d.say("pod template annotations as stored: %s", labels(gw.Spec.Template.Annotations))
	}

	d.step("A workload whose Service names its metrics port http-metrics", "search.yaml")

	d.prometheus(m)
	d.status(m, filepath.Join(root, "examples", "policy.yaml"))

	fmt.Printf("\npromenroll's decision log (one JSON line per request): %s\n", logPath)
	if once {
		return nil
	}
	fmt.Printf(`
The control plane and Prometheus keep running. In another terminal:

  export KUBECONFIG=%s
  %s get deployments -A --show-labels
  %s apply -f examples/
  curl -s '%s/api/v1/targets?state=active'
  curl -s '%s/api/v1/query?query=up'

Prometheus' HTTP API is at %s (its web UI pages need assets the Go
module does not ship; the API, /metrics and /-/ready work). Edit
examples/policy.yaml and apply again: promenroll reloads it within seconds.
Press Ctrl-C to stop.
`, c.Kubeconfig, filepath.Join("bin", "k8s", "kubectl"), filepath.Join("bin", "k8s", "kubectl"), m.PrometheusURL, m.PrometheusURL, m.PrometheusURL)
	<-ctx.Done()
	fmt.Println("\nstopping...")
	return nil
}

type demo struct {
	ctx      context.Context
	c        *cluster.Cluster
	root     string
	n        int
	reporter *cluster.Reporter
}

func (d *demo) step(title, file string) {
	data, err := os.ReadFile(filepath.Join(d.root, "examples", file))
	if err != nil {
		d.n++
		fmt.Printf("\n%d. %s\n   cannot read examples/%s: %v\n", d.n, title, file, err)
		return
	}
	d.run(title, "examples/"+file, string(data), "apply", "-f", "-")
}

// stepArgs runs kubectl with args (no input).
func (d *demo) stepArgs(title string, args ...string) { d.run(title, "", "", args...) }

// run shows and runs one kubectl command.
func (d *demo) run(title, file, stdin string, args ...string) {
	d.n++
	shown := "kubectl " + strings.ReplaceAll(strings.Join(args, " "), d.root+string(filepath.Separator), "")
	if file != "" {
		shown = "kubectl apply -f " + file
	}
	fmt.Printf("\n%d. %s\n   $ %s\n", d.n, title, shown)
	out, errOut, err := d.c.Kubectl(d.ctx, stdin, args...)
	for _, line := range strings.Split(strings.TrimSpace(out+"\n"+errOut), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			fmt.Println("   " + line)
		}
	}
	if err != nil {
		d.say("(kubectl exited with an error: the object was refused)")
	}
}

func (d *demo) get(key client.ObjectKey, obj client.Object) bool {
	if err := d.c.Client.Get(d.ctx, key, obj); err != nil {
		d.say("cannot read it back: %v", err)
		return false
	}
	return true
}

func (d *demo) say(format string, args ...any) {
	fmt.Printf("   → "+format+"\n", args...)
}

func labels(m map[string]string) string {
	return strings.ReplaceAll(k8slabels.Set(m).String(), ",", ", ")
}

// prometheus waits (a minute at most) until Prometheus scrapes the
// examples' workloads and loaded their rules, then shows what it sees.
func (d *demo) prometheus(m *cluster.Monitoring) {
	d.n++
	fmt.Printf("\n%d. What Prometheus itself sees (%s/api/v1/targets and /api/v1/rules)\n", d.n, m.PrometheusURL)
	want := map[string]int{"checkout-": 2, "gateway-": 1}
	if m.ServicesHaveEndpoints() {
		want["search-"] = 1
	}
	var active []cluster.Target
	var groups []cluster.RuleGroup
	// Shown as it is after a minute at most, whether or not all is up.
	_ = testwait.Until(d.ctx, time.Minute, func() (bool, error) {
		active, _, _ = m.AllTargets(d.ctx)
		groups, _ = m.RuleGroups(d.ctx)
		up := map[string]int{}
		for _, t := range active {
			for prefix := range want {
				if t.Health == "up" && strings.HasPrefix(t.Labels["pod"], prefix) {
					up[prefix]++
				}
			}
		}
		return maps.Equal(up, want) && len(groups) > 0, nil
	})
	for _, t := range active {
		if t.Labels["namespace"] == "" || t.Labels["namespace"] == cluster.Namespace {
			continue
		}
		// A scrape pool is kind/namespace/name/endpoint.
		monitor := t.ScrapePool
		if parts := strings.Split(t.ScrapePool, "/"); len(parts) == 4 {
			monitor = strings.ToUpper(parts[0][:1]) + parts[0][1:] + " " + parts[1] + "/" + parts[2]
		}
		d.say("%-4s %-44s %s/%s  (%s)", t.Health, t.ScrapeURL, t.Labels["namespace"], t.Labels["pod"], monitor)
	}
	d.say("no target for sandbox/experiment (dry-run: not enrolled), and none for checkout's Service port http-metrics (its pods' metrics port is the PodMonitor's: the pod wins)")
	for _, g := range groups {
		d.say("rule group loaded: %s (%d rules, from %s)", g.Name, len(g.Rules), filepath.Base(filepath.Dir(g.File)))
	}
	if len(groups) == 0 {
		d.say("no rule group loaded yet (see %s)", d.c.LogDir)
	}
}

// status starts a replica that reports the monitoring status (every 5s
// here; 1m by default), installs OpenReports' CRD, and shows what the
// status says: promenroll status for checkout, and the Reports.
func (d *demo) status(m *cluster.Monitoring, policyFile string) {
	d.n++
	fmt.Printf("\n%d. The monitoring status: is everything really scraped and evaluated?\n", d.n)
	rep, err := d.c.StartReporter(d.ctx, m, 5*time.Second)
	if err != nil {
		d.say("the reporter did not start: %v", err)
		return
	}
	d.reporter = rep
	d.stepArgs("OpenReports' Report CRD (deploy/components/openreports)", "apply", "-k", filepath.Join(d.root, "deploy", "components", "openreports"))
	// Shown as it is after a minute at most.
	_ = testwait.Until(d.ctx, time.Minute, func() (bool, error) {
		out, _, err := d.c.Kubectl(d.ctx, "", "get", "reports", "-n", "shop", "promenroll", "-o", "jsonpath={.summary.pass}")
		return err == nil && out != "" && out != "0", nil
	})
	prom := cluster.MonitoringNamespace + "/" + cluster.PrometheusName
	d.n++
	fmt.Printf("\n%d. One object, link by link\n   $ promenroll status deployment/checkout -n shop\n", d.n)
	out, errOut, _ := d.c.Promenroll(d.ctx, "status", "deployment/checkout", "-n", "shop", "--kubeconfig", d.c.Kubeconfig, "--policy", policyFile, "--prometheus-url", prom+"="+m.PrometheusURL)
	for _, line := range strings.Split(strings.TrimSpace(out+errOut), "\n") {
		fmt.Println("   " + line)
	}
	d.stepArgs("Every namespace's Report", "get", "reports", "-A")
}
