// Command demo runs promenroll against a real local control plane (etcd and
// kube-apiserver built from their Go modules), applies examples/ with the
// real kubectl, and tells what happened. `make demo`; `make demo
// ARGS=--once` exits after the account instead of waiting for Ctrl-C.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/test/cluster"
)

func main() {
	once := flag.Bool("once", false, "exit after the account instead of serving until Ctrl-C")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *once); err != nil {
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

	d := &demo{ctx: ctx, c: c, root: root}
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

	fmt.Printf("\npromenroll's decision log (one JSON line per request): %s\n", logPath)
	if once {
		return nil
	}
	fmt.Printf(`
The control plane keeps running. In another terminal:

  export KUBECONFIG=%s
  %s get deployments -A --show-labels
  %s apply -f examples/

Edit examples/policy.yaml and apply again: promenroll reloads it within seconds.
Press Ctrl-C to stop.
`, c.Kubeconfig, filepath.Join("bin", "k8s", "kubectl"), filepath.Join("bin", "k8s", "kubectl"))
	<-ctx.Done()
	fmt.Println("\nstopping...")
	return nil
}

type demo struct {
	ctx  context.Context
	c    *cluster.Cluster
	root string
	n    int
}

func (d *demo) step(title, file string) {
	d.n++
	fmt.Printf("\n%d. %s\n   $ kubectl apply -f examples/%s\n", d.n, title, file)
	data, err := os.ReadFile(filepath.Join(d.root, "examples", file))
	if err != nil {
		d.say("cannot read: %v", err)
		return
	}
	out, errOut, err := d.c.Kubectl(d.ctx, string(data), "apply", "-f", "-")
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
