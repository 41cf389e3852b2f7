package chart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

// TestChartOnARealNode installs the chart as a user does, default values
// (self-managed TLS) but for the image, onto a real node: a kubelet and
// containerd built from their modules run its pods from make image's
// image (cluster.StartNode).
//   - both replicas are scheduled, Running and Ready through their probes;
//   - the running container is the image as the chart runs it: user 65532,
//     a read-only root, no capability, seccomp filtering, no privilege
//     escalation, no shell in the image, GOMEMLIMIT and GOMAXPROCS from the
//     downward API;
//   - the API server calls the webhooks through their Service: a broken
//     PrometheusRule is refused, a Deployment applied with kubectl is
//     enrolled, and its pod, running the test workload image, becomes an
//     up target in Prometheus; promenroll's own pods are up targets and
//     its PrometheusRule is loaded;
//   - an edit of the policy ConfigMap reaches the running pods through
//     the kubelet's update of the mounted volume and is reloaded by both;
//   - one replica's pod is deleted during a load of admissions: none fails;
//   - helm uninstall leaves nothing, and the node's Stop leaves nothing
//     on the machine (sysctls back as they were).
func TestChartOnARealNode(t *testing.T) {
	if why := cluster.NodeUnsupported(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root on a kernel that runs a node: %s", why)
		}
		t.Skip(why)
	}
	ctx := t.Context()
	sysctls, err := cluster.NodeSysctls()
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: this one after the cluster's Stop.
	t.Cleanup(func() {
		for _, l := range cluster.NodeLeftBehind(sysctls) {
			t.Errorf("after the node stopped: %s", l)
		}
	})
	c := startCluster(t, cluster.Options{Bare: true, Node: true})
	node, err := c.StartNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for what, d := range node.Started {
		t.Logf("started: %s in %s", what, d.Round(10*time.Millisecond))
	}
	mon, err := c.Monitoring(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// helm install, the image the only value set.
	image := node.Images["promenroll-image.tar"]
	registry, rest, _ := strings.Cut(image, "/")
	repository, tag, _ := strings.Cut(rest, ":")
	vals := map[string]any{"image": map[string]any{"registry": registry, "repository": repository, "tag": tag}}
	installed := time.Now()
	rel := helmInstall(t, c, vals, nil)
	pods := readyReplicas(t, c, 2, nil, 3*time.Minute)
	t.Logf("helm install to both replicas Ready: %s", time.Since(installed).Round(100*time.Millisecond))
	for _, p := range pods {
		if p.Spec.NodeName != cluster.NodeName {
			t.Errorf("pod %s scheduled on %q, not the node", p.Name, p.Spec.NodeName)
		}
		assertRunsAsTheChartSays(t, node, p)
	}

	// The API server calls the webhooks through the Service.
	const team = "team"
	createNamespace(t, c, team)
	broken := rule("broken")
	broken.Namespace = team
	broken.Spec.Groups[0].Rules[0].Expr = intstr.FromString("up ==")
	if err := c.Client.Create(ctx, broken, client.DryRunAll); err == nil || !strings.Contains(err.Error(), "denied the request") {
		t.Errorf("a PrometheusRule with a broken expression: want promenroll's denial, got %v", err)
	}
	applied := time.Now()
	if out, errOut, err := c.Kubectl(ctx, workloadManifest(team, node.Images["workload-image.tar"]), "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s%s", err, out, errOut)
	}
	var app appsv1.Deployment
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: team, Name: "app"}, &app); err != nil {
		t.Fatal(err)
	}
	if app.Spec.Template.Labels[scrapeLabel] != "true" {
		t.Fatalf("the Deployment applied with kubectl is not enrolled: pod template labels %v", app.Spec.Template.Labels)
	}
	up := waitForUpTarget(t, mon, team, "app-", 2*time.Minute)
	t.Logf("kubectl apply to the workload's pod scraped up (%s): %s", up.ScrapeURL, time.Since(applied).Round(100*time.Millisecond))
	for _, p := range pods {
		waitForUpTarget(t, mon, namespace, p.Name, time.Minute)
	}
	testwait.True(t, "Prometheus loads promenroll's PrometheusRule", time.Minute, func() bool {
		groups, err := mon.RuleGroups(ctx)
		return err == nil && slices.ContainsFunc(groups, func(g cluster.RuleGroup) bool { return strings.Contains(g.File, namespace) })
	})

	// A policy edit reaches both pods through the kubelet.
	before := map[string]string{}
	for _, p := range pods {
		before[p.Name] = policyGeneration(p)
		if before[p.Name] == "" {
			t.Fatalf("pod %s reports no promenroll_policy_info", p.Name)
		}
	}
	edited := time.Now()
	editPolicy(t, c)
	testwait.True(t, "both replicas reload the edited policy", 2*time.Minute, func() bool {
		for _, p := range pods {
			if g := policyGeneration(p); g == "" || g == before[p.Name] {
				return false
			}
		}
		return true
	})
	t.Logf("ConfigMap edit to both replicas reloaded: %s", time.Since(edited).Round(100*time.Millisecond))
	for i := range 4 {
		d := deployment(fmt.Sprintf("reloaded-%d", i))
		d.Namespace = team
		if err := c.Client.Create(ctx, d, client.DryRunAll); err != nil || d.Labels["reloaded"] != "yes" {
			t.Errorf("a Deployment admitted after the reload lacks the edited policy's label: %v %v", err, d.Labels)
		}
	}

	// One replica's pod deleted during a load of admissions.
	sent, failed, firstErr := admitDuring(t, c, team, func() {
		victim := pods[0]
		deleted := time.Now()
		if err := c.Client.Delete(ctx, &victim); err != nil {
			t.Error(err)
			return
		}
		readyReplicas(t, c, 2, []string{victim.Name}, 2*time.Minute)
		t.Logf("pod %s deleted to its replacement Ready and it gone: %s", victim.Name, time.Since(deleted).Round(100*time.Millisecond))
	})
	t.Logf("admissions while a replica's pod was deleted and replaced: %d sent, %d failed", sent, failed)
	if failed > 0 {
		t.Errorf("%d of %d admissions failed while a replica's pod was deleted; first: %v", failed, sent, firstErr)
	}

	// helm uninstall: nothing left, the pods gone from the node.
	if err := uninstall(t, c); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	assertNothingLeft(t, c, rel.Manifest)
	testwait.True(t, "the release's pods are gone", 2*time.Minute, func() bool {
		var list corev1.PodList
		return c.Client.List(ctx, &list, client.InNamespace(namespace)) == nil && len(list.Items) == 0
	})
	d := deployment("after-uninstall")
	d.Namespace = team
	if err := c.Client.Create(ctx, d, client.DryRunAll); err != nil || d.Labels[scrapeLabel] != "" {
		t.Errorf("a Deployment after uninstall: want admitted as is, got %v %v", err, d.Labels)
	}
}

const scrapeLabel = "monitoring.promenroll.io/scrape"

// readyReplicas waits until want of the release's pods, none named in
// gone, are Running and Ready and the gone ones have left, and returns
// them.
func readyReplicas(t *testing.T, c *cluster.Cluster, want int, gone []string, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	var last string
	err := testwait.Until(t.Context(), timeout, func() (bool, error) {
		var list corev1.PodList
		if err := c.Client.List(t.Context(), &list, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/name": "promenroll"}); err != nil {
			return false, err
		}
		ready, last = nil, ""
		for _, p := range list.Items {
			if slices.Contains(gone, p.Name) {
				last += fmt.Sprintf(" %s still there (%s);", p.Name, p.Status.Phase)
				continue
			}
			if podReady(p) {
				ready = append(ready, p)
			} else {
				last += fmt.Sprintf(" %s %s not ready %s;", p.Name, p.Status.Phase, podWaiting(p))
			}
		}
		return len(ready) == want && last == "", nil
	})
	if err != nil {
		t.Fatalf("%d ready replicas, want %d:%s: %v", len(ready), want, last, err)
	}
	return ready
}

func podReady(p corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return p.DeletionTimestamp == nil && cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podWaiting says why a pod's containers are not running, if they say.
func podWaiting(p corev1.Pod) string {
	var why []string
	for _, s := range p.Status.ContainerStatuses {
		switch {
		case s.State.Waiting != nil:
			why = append(why, fmt.Sprintf("%s waiting: %s %s", s.Name, s.State.Waiting.Reason, s.State.Waiting.Message))
		case s.State.Terminated != nil:
			why = append(why, fmt.Sprintf("%s terminated: %s exit %d", s.Name, s.State.Terminated.Reason, s.State.Terminated.ExitCode))
		}
	}
	return strings.Join(why, ", ")
}

// assertRunsAsTheChartSays reads what the kernel says of the running
// container's process: the chart's securityContext and the image's
// properties, as enforced rather than as declared.
func assertRunsAsTheChartSays(t *testing.T, node *cluster.Node, p corev1.Pod) {
	t.Helper()
	if len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("pod %s: %d container statuses, want 1", p.Name, len(p.Status.ContainerStatuses))
	}
	pid, err := node.ContainerPID(t.Context(), p.Status.ContainerStatuses[0].ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	proc := func(name string) string {
		b, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	status := map[string]string{}
	for _, line := range strings.Split(proc("status"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			status[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	t.Logf("pod %s, pid %d: Uid %s, CapEff %s, NoNewPrivs %s, Seccomp %s", p.Name, pid, status["Uid"], status["CapEff"], status["NoNewPrivs"], status["Seccomp"])
	for field, want := range map[string]string{
		"Uid":        "65532 65532 65532 65532",
		"Gid":        "65532 65532 65532 65532",
		"CapEff":     "0000000000000000",
		"CapPrm":     "0000000000000000",
		"CapBnd":     "0000000000000000",
		"NoNewPrivs": "1",
		"Seccomp":    "2", // a filter: RuntimeDefault
	} {
		if status[field] != want {
			t.Errorf("pod %s, pid %d: %s %q, want %q", p.Name, pid, field, status[field], want)
		}
	}
	var root string
	for _, line := range strings.Split(proc("mountinfo"), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
			root = f[5]
		}
	}
	if !slices.Contains(strings.Split(root, ","), "ro") {
		t.Errorf("pod %s: / is mounted %q, want read-only", p.Name, root)
	}
	if _, err := os.Stat(filepath.Join("/proc", fmt.Sprint(pid), "root", "bin", "sh")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pod %s: /bin/sh in the image (%v)", p.Name, err)
	}
	env := strings.Split(proc("environ"), "\x00")
	for _, want := range []string{"GOMEMLIMIT=268435456", "GOMAXPROCS=1", "POD_NAMESPACE=" + namespace} {
		if !slices.Contains(env, want) {
			t.Errorf("pod %s: %s not in its environment", p.Name, want)
		}
	}
}

// workloadManifest is what a team applies: a Deployment of the test
// workload image with a metrics port, no monitoring label of its own.
func workloadManifest(ns, image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: app, namespace: %s}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: app
        image: %s
        imagePullPolicy: Never
        ports: [{name: metrics, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: metrics}, periodSeconds: 2}
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
`, ns, image)
}

// waitForUpTarget waits until Prometheus scrapes a pod of ns whose name
// starts with pod, with health up, and returns the target.
func waitForUpTarget(t *testing.T, mon *cluster.Monitoring, ns, pod string, timeout time.Duration) cluster.Target {
	t.Helper()
	var found cluster.Target
	var seen []string
	err := testwait.Until(t.Context(), timeout, func() (bool, error) {
		active, _, err := mon.AllTargets(t.Context())
		if err != nil {
			return false, err
		}
		seen = seen[:0]
		for _, tg := range active {
			if tg.Labels["namespace"] == ns && strings.HasPrefix(tg.Labels["pod"], pod) {
				seen = append(seen, fmt.Sprintf("%s %s %s", tg.ScrapeURL, tg.Health, tg.LastError))
				if tg.Health == "up" {
					found = tg
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no up target for pod %s/%s* in Prometheus (its targets: %v): %v", ns, pod, seen, err)
	}
	return found
}

// policyGeneration is the generation of the policy a replica serves
// (promenroll_policy_info), read from its metrics port at its pod IP.
func policyGeneration(p corev1.Pod) string {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + p.Status.PodIP + ":8080/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "promenroll_policy_info{"); ok && strings.HasSuffix(line, " 1") {
			for _, l := range strings.Split(strings.SplitN(rest, "}", 2)[0], ",") {
				if v, ok := strings.CutPrefix(l, `generation="`); ok {
					return strings.TrimSuffix(v, `"`)
				}
			}
		}
	}
	return ""
}

// editPolicy adds the label reloaded: "yes" to the workloads rule of the
// release's policy ConfigMap, as a user edits it.
func editPolicy(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	var cm corev1.ConfigMap
	if err := c.Client.Get(t.Context(), client.ObjectKey{Namespace: namespace, Name: "promenroll-policy"}, &cm); err != nil {
		t.Fatal(err)
	}
	var policy map[string]any
	if err := yaml.Unmarshal([]byte(cm.Data["policy.yaml"]), &policy); err != nil {
		t.Fatal(err)
	}
	edited := false
	for _, r := range policy["enroll"].([]any) {
		if rule := r.(map[string]any); rule["name"] == "workloads" {
			rule["labels"].(map[string]any)["reloaded"] = "yes"
			edited = true
		}
	}
	if !edited {
		t.Fatal("the chart's policy has no workloads rule")
	}
	data, err := yaml.Marshal(policy)
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["policy.yaml"] = string(data)
	if err := c.Client.Update(t.Context(), &cm); err != nil {
		t.Fatal(err)
	}
}

// admitDuring sends admissions from 4 clients (one each 20 ms at most),
// for 3 s, then while during runs, then 3 s more: server-side dry-run
// creates of PrometheusRules (the validating webhook fails closed: a
// replica not answering is an error) and of Deployments (the mutating
// webhook fails open: a Deployment admitted without its enrollment label
// is a failure too). It returns the count sent and failed, and the first
// failure.
func admitDuring(t *testing.T, c *cluster.Cluster, ns string, during func()) (sent, failed int64, first error) {
	var nSent, nFailed atomic.Int64
	var firstErr atomic.Value
	var stop atomic.Bool
	var wg sync.WaitGroup
	fail := func(err error) {
		nFailed.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(4 * time.Minute)
			for i := 0; !stop.Load() && time.Now().Before(deadline); i++ {
				ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
				nSent.Add(1)
				if i%2 == 0 {
					r := rule(fmt.Sprintf("load-%d-%d", w, i))
					r.Namespace = ns
					if err := c.Client.Create(ctx, r, client.DryRunAll); err != nil {
						fail(fmt.Errorf("PrometheusRule %s: %w", r.Name, err))
					}
				} else {
					d := deployment(fmt.Sprintf("load-%d-%d", w, i))
					d.Namespace = ns
					if err := c.Client.Create(ctx, d, client.DryRunAll); err != nil {
						fail(fmt.Errorf("Deployment %s: %w", d.Name, err))
					} else if d.Labels[scrapeLabel] != "true" {
						fail(fmt.Errorf("Deployment %s admitted without enrollment (the webhook did not answer; failurePolicy Ignore)", d.Name))
					}
				}
				cancel()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(3 * time.Second)
	during()
	time.Sleep(3 * time.Second)
	stop.Store(true)
	wg.Wait()
	if v := firstErr.Load(); v != nil {
		first = v.(error)
	}
	return nSent.Load(), nFailed.Load(), first
}
