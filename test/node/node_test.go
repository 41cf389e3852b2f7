package node

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

// killedRunEnv tells the test binary it is the run to be killed, and
// where to say it is ready.
const killedRunEnv = "PROMENROLL_NODE_KILLED_RUN"

// TestNodeStartsAfterAKilledRun: a run is killed (SIGKILL, as a CI
// timeout or a ^C twice does) while its node runs a pod. What it leaves
// — the container and its shim, mounts, the network namespace and veth
// pair, cgroups, the sysctls the kubelet set — is removed by the next
// run's StartNode, whose node then runs a pod, and whose Stop leaves
// nothing and the sysctls as they were before either run.
func TestNodeStartsAfterAKilledRun(t *testing.T) {
	if ready := os.Getenv(killedRunEnv); ready != "" {
		runToBeKilled(t, ready)
		return
	}
	requireNode(t)
	sysctls, err := cluster.NodeSysctls()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestNodeStartsAfterAKilledRun$", "-test.v", "-test.timeout=5m") //nolint:gosec // this test binary, run again
	cmd.Env = append(os.Environ(), killedRunEnv+"="+ready)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	err = testwait.Until(t.Context(), 4*time.Minute, func() (bool, error) {
		select {
		case err := <-exited:
			return false, testwait.Final(fmt.Errorf("the run to be killed ended by itself (%w):\n%s", err, out.String()))
		default:
		}
		_, err := os.Stat(ready)
		return err == nil, nil
	})
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatal(err)
	}
	state, err := os.ReadFile(ready)
	if err != nil {
		t.Fatal(err)
	}
	clusterDir, workloadPID, _ := strings.Cut(strings.TrimSpace(string(state)), " ")
	// The control plane envtest starts has no Pdeathsig: killed with the
	// run, as its process group would be.
	orphans := cluster.ChildrenOf(cmd.Process.Pid)
	_ = cmd.Process.Kill()
	if err := <-exited; err == nil {
		t.Error("the run to be killed exited 0 after SIGKILL")
	}
	for _, pid := range orphans {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	t.Cleanup(func() { _ = os.RemoveAll(clusterDir) })

	// What the killed run left.
	pid, _ := strconv.Atoi(workloadPID)
	for what, left := range map[string]bool{
		"its workload container (pid " + workloadPID + ")": alive(pid),
		"its network namespace":                            exists("/var/run/netns/promenroll-node"),
		"its node directory":                               exists(filepath.Join(os.TempDir(), "promenroll-node")),
		"its cgroups":                                      exists("/sys/fs/cgroup/memory/promenroll-node"),
	} {
		if !left {
			t.Errorf("the killed run did not leave %s: the test no longer tests the cleanup", what)
		}
	}

	// The next run.
	ctx := t.Context()
	c, err := cluster.Start(ctx, cluster.Options{Bare: true, Node: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.Stop()
		}
	})
	n, err := c.StartNode(ctx)
	if err != nil {
		t.Log(c.LogTails(30))
		t.Fatalf("StartNode after a killed run: %v", err)
	}
	if alive(pid) {
		t.Errorf("the killed run's workload container (pid %d) still runs after StartNode", pid)
	}
	runPod(t, c, n)
	c.Stop()
	stopped = true
	for _, l := range cluster.NodeLeftBehind(sysctls) {
		t.Errorf("after the node stopped: %s", l)
	}
}

// runToBeKilled starts a cluster and its node, runs a pod, writes the
// cluster's directory and the pod's process ID to ready, and waits to
// be killed.
func runToBeKilled(t *testing.T, ready string) {
	ctx := t.Context()
	c, err := cluster.Start(ctx, cluster.Options{Bare: true, Node: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.StartNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := runPod(t, c, n)
	if err := os.WriteFile(ready, fmt.Appendf(nil, "%s %d\n", c.Dir, pid), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Minute)
	t.Fatal("not killed within 5 minutes")
}

// runPod runs the workload image in a pod on the node and returns its
// process' host PID once it is Running.
func runPod(t *testing.T, c *cluster.Cluster, n *cluster.Node) int {
	t.Helper()
	ctx := t.Context()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "workload"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "workload", Image: n.Images["workload-image.tar"], ImagePullPolicy: corev1.PullNever,
		}}},
	}
	// The default ServiceAccount the ServiceAccount admission plugin
	// requires is created by kube-controller-manager.
	err := testwait.Until(ctx, time.Minute, func() (bool, error) { return c.Client.Create(ctx, pod) == nil, nil })
	if err != nil {
		t.Fatalf("create pod: %v", err)
	}
	var pid int
	err = testwait.Until(ctx, 2*time.Minute, func() (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		if len(pod.Status.ContainerStatuses) == 0 || pod.Status.ContainerStatuses[0].State.Running == nil {
			return false, nil
		}
		pid, err = n.ContainerPID(ctx, pod.Status.ContainerStatuses[0].ContainerID)
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("pod %s not running on the node (%s): %v", pod.Name, pod.Status.Phase, err)
	}
	return pid
}

func requireNode(t *testing.T) {
	t.Helper()
	if why := cluster.NodeUnsupported(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root on a kernel that runs a node: %s", why)
		}
		t.Skip(why)
	}
}

func alive(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == nil }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
