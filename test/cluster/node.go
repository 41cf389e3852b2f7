package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/testwait"
)

// A real node's names and addresses. They are fixed, so that a run finds
// and removes what a killed one left. The addresses are in RFC 2544's
// benchmark range (198.18.0.0/15, like the pod network of podnet.go, which
// takes 198.18.0.0/16); nothing routes them off this machine.
const (
	// NodeName is the real node's name (and the kubelet's hostname).
	NodeName   = "promenroll-node"
	nodeNetns  = "promenroll-node"
	nodeHostIf = "pnode-host"
	nodeIf     = "pnode"
	nodeHostIP = "198.19.255.1"
	// NodeIP is the node's address: the kubelet's, on its side of the veth
	// pair to this namespace.
	NodeIP = "198.19.255.2"
	// PodCIDR holds the Pods' addresses, on the node's CNI bridge.
	PodCIDR    = "198.19.0.0/24"
	podGateway = "198.19.0.1"
	// serviceIP is the kubernetes Service's ClusterIP (the first of
	// envtest's 10.0.0.0/24).
	serviceIP = "10.0.0.1"
	// nodeCgroup is the kubelet's cgroup root in every hierarchy.
	nodeCgroup = "promenroll-node"
	// PauseImage is the pod sandbox image containerd v2.4 pins (make
	// image assembles one under its name: nothing can be pulled).
	PauseImage = "registry.k8s.io/pause:3.10.2"
)

// nodeSysctls are the host settings the kubelet changes
// (protectKernelDefaults false); they are saved beside the node's
// directory and put back by Stop, or by the next run after a killed one.
var nodeSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// Node is a real Kubernetes node on this machine, built from the same
// modules as the control plane: containerd v2 and runc (bin/node) run the
// Pods kube-scheduler places on it and its kubelet (bin/k8s) starts, from
// images imported from make image's archives. The kubelet, containerd and
// the pod network (a CNI bridge, host-local addresses) live in a network
// namespace the harness creates, joined to this one by a veth pair: the
// API server and Prometheus reach Pods through it, and the namespace has
// no other way out (no default route, no DNS: Pods get an empty
// resolv.conf). In the namespace a forwarder answers at the kubernetes
// Service's ClusterIP for the API server, which is what kube-proxy's DNAT
// does for Pods; the API server calls webhook Services at their
// endpoints' IPs (Options.Node). Everything is under one directory, and
// Stop (or the next StartNode) removes it with the containers, mounts,
// cgroups, the namespace, the veth pair and the sysctls the kubelet set.
type Node struct {
	// Started says how long each part took to be ready.
	Started map[string]time.Duration
	// Images are the names of the imported images, by archive
	// (promenroll-image.tar, workload-image.tar).
	Images map[string]string

	c         *Cluster
	dir       string
	runtime   *Runtime
	proxy     *APIProxy
	kubelet   *process
	scheduler *process
}

// nodeDir is the node's directory: containerd's root and state, the
// kubelet's root, the CNI configuration, the logs.
var nodeDir = filepath.Join(os.TempDir(), "promenroll-node")

// NodeUnsupported says why this machine cannot run a node, or "" when it
// can.
func NodeUnsupported() string {
	if why := RuntimeUnsupported(); why != "" {
		return why
	}
	for _, tool := range []string{"ip", "nsenter", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is missing (Debian: iproute2, util-linux, mount)"
		}
	}
	if _, err := os.Stat("/sys/module/bridge"); err != nil {
		if out, err := exec.Command("modprobe", "bridge").CombinedOutput(); err != nil {
			return fmt.Sprintf("the kernel has no bridge module for the pod network: modprobe bridge: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return ""
}

// StartNode starts the node in a cluster started with Options.Node, and
// the monitoring stack (Monitoring), and waits until the node is Ready and
// schedulable. What a killed run left is removed first. The cluster's Stop
// stops the node.
func (c *Cluster) StartNode(ctx context.Context) (n *Node, err error) {
	if !c.opts.Node {
		return nil, errors.New("StartNode needs a cluster started with Options.Node")
	}
	if c.mon != nil {
		return nil, errors.New("StartNode must come before Monitoring: the monitoring stack would play the kubelet")
	}
	if why := NodeUnsupported(); why != "" {
		return nil, fmt.Errorf("this machine cannot run a node: %s", why)
	}
	bins := map[string]string{}
	for _, b := range []string{"k8s/kubelet", "k8s/kube-scheduler", "node/cni/bridge", "node/cni/host-local", "node/cni/loopback"} {
		bins[filepath.Base(b)] = filepath.Join(c.Root, "bin", b)
		if _, err := os.Stat(bins[filepath.Base(b)]); err != nil {
			return nil, fmt.Errorf("%s missing: run `make test-bins node-bins` (make test does)", bins[filepath.Base(b)])
		}
	}
	n = &Node{Started: map[string]time.Duration{}, Images: map[string]string{}, c: c, dir: nodeDir}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	start := time.Now()
	nodeStarted.Store(true)
	// A killed run's containers, mounts, cgroups, namespace and sysctls.
	n.Stop()
	if err := saveSysctls(nodeDir + ".sysctls"); err != nil {
		return nil, err
	}
	if err := n.network(); err != nil {
		return nil, err
	}
	if n.proxy, err = c.apiForwarder(); err != nil {
		return nil, err
	}
	rtStart := time.Now()
	if n.runtime, err = startRuntime(ctx, n.dir, runtimeOptions{namespace: "k8s.io", cri: n.criConfig(filepath.Dir(bins["bridge"])), netns: nodeNetns, logDir: n.logDir()}); err != nil {
		return nil, err
	}
	n.Started["containerd"] = time.Since(rtStart)
	for _, archive := range []string{"pause-image.tar", "promenroll-image.tar", "workload-image.tar"} {
		names, err := n.runtime.Import(ctx, filepath.Join(c.Root, "bin", archive))
		if err != nil {
			return nil, err
		}
		n.Images[archive] = names[0]
	}
	if n.Images["pause-image.tar"] != PauseImage {
		return nil, fmt.Errorf("bin/pause-image.tar holds %s, not %s: run `make image`", n.Images["pause-image.tar"], PauseImage)
	}
	if err := n.cgroups(); err != nil {
		return nil, err
	}
	kubeletStart := time.Now()
	if err := n.startKubelet(bins["kubelet"]); err != nil {
		return nil, err
	}
	if n.scheduler, err = startProcess(n.logDir(), "kube-scheduler", bins["kube-scheduler"], []string{
		"--kubeconfig", c.Kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=2",
	}, nil); err != nil {
		return nil, err
	}
	// The monitoring stack's kube-controller-manager runs the controllers
	// the node's Pods need.
	c.node = n
	defer func() {
		if err != nil {
			c.node = nil
		}
	}()
	if _, err := c.Monitoring(ctx); err != nil {
		return nil, err
	}
	if err := n.waitReady(ctx); err != nil {
		return nil, err
	}
	n.Started["kubelet (start to node Ready and schedulable)"] = time.Since(kubeletStart)
	n.Started["node and monitoring stack (all)"] = time.Since(start)
	return n, nil
}

// logDir holds containerd's, the kubelet's and kube-scheduler's logs: the
// cluster's, which LogTails reports and which outlives a failed start.
func (n *Node) logDir() string { return n.c.LogDir }

// PodLogs is where the kubelet keeps the containers' output:
// <namespace>_<pod>_<uid>/<container>/0.log.
func (n *Node) PodLogs() string { return filepath.Join(n.dir, "pods") }

// network creates the node's namespace and the veth pair to it, and routes
// the pod network through it.
func (n *Node) network() error {
	steps := [][]string{
		{"netns", "add", nodeNetns},
		{"link", "add", nodeHostIf, "type", "veth", "peer", "name", nodeIf},
		{"link", "set", nodeIf, "netns", nodeNetns},
		{"addr", "add", nodeHostIP + "/30", "dev", nodeHostIf},
		{"link", "set", nodeHostIf, "up"},
		{"-n", nodeNetns, "link", "set", "lo", "up"},
		{"-n", nodeNetns, "addr", "add", NodeIP + "/30", "dev", nodeIf},
		{"-n", nodeNetns, "link", "set", nodeIf, "up"},
		// The kubernetes Service's ClusterIP is the node's own address,
		// where the forwarder listens.
		{"-n", nodeNetns, "addr", "add", serviceIP + "/32", "dev", "lo"},
		{"route", "add", PodCIDR, "via", NodeIP},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return fmt.Errorf("node network: %w", err)
		}
	}
	// The node forwards between the veth and its Pods' bridge
	// (/proc/sys/net is the opening thread's namespace's).
	err := inNetns(nodeNetns, func() error { return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644) })
	if err != nil {
		return fmt.Errorf("node network: enable forwarding: %w", err)
	}
	return nil
}

// apiForwarder listens at the kubernetes Service's ClusterIP inside the
// node's namespace and forwards to the API server.
func (c *Cluster) apiForwarder() (*APIProxy, error) {
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return nil, err
	}
	l, err := listenIn(nodeNetns, net.JoinHostPort(serviceIP, "443"))
	if err != nil {
		return nil, fmt.Errorf("listen at the kubernetes Service's ClusterIP in the node's namespace: %w", err)
	}
	p := &APIProxy{target: u.Host, conns: map[net.Conn]bool{}, addr: l.Addr().String(), l: l}
	go p.serve(l)
	return p, nil
}

// criConfig is containerd's CRI configuration: the local pause image
// pinned (so it is never pulled nor collected), the CNI bridge, runc's
// state and the Pods' network namespaces under the node's directory,
// cgroupfs (the kubelet's driver here), no AppArmor (the kernel has none),
// and OOM score adjustments no lower than containerd's own: root here
// lacks CAP_SYS_RESOURCE, so the -998 the kubelet asks for a sandbox (and
// -997 for a system-cluster-critical Pod) would fail every sandbox.
func (n *Node) criConfig(cniBin string) string {
	return fmt.Sprintf(`[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q
[plugins.'io.containerd.cri.v1.runtime']
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  tolerate_missing_hugetlb_controller = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%q]
    conf_dir = %q
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      Root = %q
      SystemdCgroup = false
`, PauseImage, cniBin, filepath.Join(n.dir, "cni", "net.d"), filepath.Join(n.dir, "runc"))
}

// writeCNI writes the pod network's configuration: one bridge, the
// node's gateway, addresses from PodCIDR kept under the node's
// directory, no masquerade (nothing leaves).
func (n *Node) writeCNI() error {
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "promenroll-node",
  "plugins": [{
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "isDefaultGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]], "dataDir": %q}
  }]
}
`, PodCIDR, podGateway, filepath.Join(n.dir, "cni", "ipam"))
	dir := filepath.Join(n.dir, "cni", "net.d")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "10-promenroll-node.conflist"), []byte(conf), 0o600)
}

// cgroups creates the kubelet's cgroup root in every hierarchy (the
// kubelet requires it to exist); a cpuset cgroup needs its parent's CPUs
// and memory nodes before anything can join it.
func (n *Node) cgroups() error {
	hierarchies, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	for _, h := range hierarchies {
		if !h.IsDir() || h.Name() == "unified" {
			continue
		}
		dir := filepath.Join("/sys/fs/cgroup", h.Name(), nodeCgroup)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		if h.Name() == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/cpuset", f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("cgroup %s/%s: %w", dir, f, err)
				}
			}
		}
	}
	return nil
}

// removeCgroups removes the cgroup name and those under it in every
// hierarchy, deepest first (a cgroup goes once its processes and children
// have).
func removeCgroups(name string) {
	hierarchies, _ := os.ReadDir("/sys/fs/cgroup")
	for _, h := range hierarchies {
		root := filepath.Join("/sys/fs/cgroup", h.Name(), name)
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

// startKubelet writes the kubelet's configuration and kubeconfig (the
// API server at the kubernetes ClusterIP, through the forwarder) and
// starts it in the node's namespace.
func (n *Node) startKubelet(bin string) error {
	if err := n.writeCNI(); err != nil {
		return err
	}
	kc, err := os.ReadFile(n.c.Kubeconfig)
	if err != nil {
		return err
	}
	u, err := url.Parse(n.c.Config.Host)
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(n.dir, "kubelet.kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(strings.ReplaceAll(string(kc), u.Host, serviceIP+":443")), 0o600); err != nil {
		return err
	}
	// cgroup v1 only on this machine: failCgroupV1 false (the kubelet
	// refuses v1 by default since 1.35; v1 support is to be removed in a
	// later release). syncFrequency 10s instead of 1m: ConfigMap volumes
	// are updated on a pod's sync. Eviction and image GC thresholds low:
	// the node shares the machine's disk.
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: ""
failSwapOn: false
podLogsDir: %s
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
evictionHard: {memory.available: 100Mi, nodefs.available: "1%%", nodefs.inodesFree: "1%%", imagefs.available: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
oomScoreAdj: 0
`, nodeCgroup, n.runtime.sock, NodeIP, n.PodLogs())
	configPath := filepath.Join(n.dir, "kubelet.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	program, args := inNetnsCommand(nodeNetns, bin, []string{
		"--config", configPath,
		"--kubeconfig", kubeconfig,
		"--hostname-override", NodeName,
		"--node-ip", NodeIP,
		"--root-dir", filepath.Join(n.dir, "kubelet"),
		"--cert-dir", filepath.Join(n.dir, "kubelet", "pki"),
		"--v", "2",
	})
	n.kubelet, err = startProcess(n.logDir(), "kubelet", program, args, nil)
	return err
}

// waitReady waits until the kubelet has registered the node and reports
// it Ready (the runtime and the pod network are up) and no taint keeps
// Pods off it (the not-ready taint it registers with is taken off by
// kube-controller-manager's node lifecycle controller: Monitoring starts
// it).
func (n *Node) waitReady(ctx context.Context) error {
	var last string
	err := testwait.Until(ctx, 2*time.Minute, func() (bool, error) {
		for _, p := range []*process{n.kubelet, n.scheduler, n.runtime.proc} {
			if done, why := p.exited(); done {
				return false, testwait.Final(errors.New(why))
			}
		}
		var node corev1.Node
		if err := n.c.Client.Get(ctx, client.ObjectKey{Name: NodeName}, &node); err != nil {
			// Not registered yet: the kubelet registers it.
			last = err.Error()
			return false, err
		}
		last = "no Ready condition yet"
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				last = fmt.Sprintf("Ready %s: %s", cond.Status, cond.Message)
				if cond.Status != corev1.ConditionTrue {
					return false, nil
				}
			}
		}
		for _, taint := range node.Spec.Taints {
			if taint.Effect == corev1.TaintEffectNoSchedule || taint.Effect == corev1.TaintEffectNoExecute {
				last = "tainted " + taint.ToString()
				return false, nil
			}
		}
		return last != "no Ready condition yet", nil
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready (%s); see %s and %s: %w", NodeName, last, n.kubelet.log, n.runtime.Log(), err)
	}
	return nil
}

// Stop stops the scheduler, the kubelet, every container and containerd,
// and removes the node: mounts and files, cgroups, the namespace and veth
// pair, the containers' log links; it puts the sysctls back. Safe to call
// on a node that did not start (it removes what a killed run left).
func (n *Node) Stop() {
	if n == nil {
		return
	}
	n.scheduler.stop(10 * time.Second)
	n.kubelet.stop(10 * time.Second)
	if n.proxy != nil {
		n.proxy.Close()
	}
	rt := n.runtime
	if rt == nil {
		rt = newRuntime(filepath.Join(n.c.Root, "bin", "node"), n.dir, "k8s.io")
	}
	// libcni caches each attachment's result, by network and sandbox.
	sandboxes, _ := filepath.Glob(filepath.Join(n.dir, "*", "io.containerd.grpc.v1.cri", "sandboxes", "*"))
	for _, sb := range sandboxes {
		cached, _ := filepath.Glob("/var/lib/cni/results/*-" + filepath.Base(sb) + "-*")
		for _, f := range cached {
			_ = os.Remove(f)
		}
	}
	rt.Stop()
	removeCgroups(nodeCgroup)
	_ = ip("link", "del", nodeHostIf)
	if _, err := os.Stat("/var/run/netns/" + nodeNetns); err == nil {
		_ = ip("netns", "del", nodeNetns)
	}
	// The kubelet links every container's log into /var/log/containers.
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, n.dir+"/") {
			_ = os.Remove(l)
		}
	}
	restoreSysctls(nodeDir + ".sysctls")
}

// NodeSysctls reads the host sysctls the kubelet changes (the node puts
// them back when it stops).
func NodeSysctls() (map[string]string, error) {
	out := map[string]string{}
	for _, s := range nodeSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", s, err)
		}
		out[s] = strings.TrimSpace(string(v))
	}
	return out, nil
}

// saveSysctls records the host sysctls the kubelet changes.
func saveSysctls(path string) error {
	now, err := NodeSysctls()
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, s := range nodeSysctls {
		fmt.Fprintf(&b, "%s=%s\n", s, now[s])
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// NodeLeftBehind says what a node this process ran left on the machine
// after the cluster's Stop: a sysctl not as it was before (sysctls, from
// NodeSysctls), and Leftovers.
func NodeLeftBehind(sysctls map[string]string) []string {
	var out []string
	now, err := NodeSysctls()
	if err != nil {
		return []string{err.Error()}
	}
	for _, s := range nodeSysctls {
		if sysctls[s] != now[s] {
			out = append(out, fmt.Sprintf("sysctl %s is %s, was %s", s, now[s], sysctls[s]))
		}
	}
	return append(out, Leftovers()...)
}

// nodeStarted is set once this process has started a node: only then are
// the node's fixed names its own to report (another test binary may be
// running one).
var nodeStarted atomic.Bool

// nodeLeftovers lists what a node this process started left on the
// machine: its network namespace, veth pair, directory, mounts and
// cgroups.
func nodeLeftovers() []string {
	if !nodeStarted.Load() {
		return nil
	}
	var out []string
	for _, path := range []string{"/var/run/netns/" + nodeNetns, "/sys/class/net/" + nodeHostIf, nodeDir, nodeDir + ".sysctls", filepath.Join("/sys/fs/cgroup/memory", nodeCgroup)} {
		if _, err := os.Stat(path); err == nil {
			out = append(out, "the node's "+path)
		}
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(mounts), " "+nodeDir+"/") {
		out = append(out, "mounts under "+nodeDir)
	}
	return out
}

// restoreSysctls puts back the sysctls saveSysctls recorded and removes
// the record.
func restoreSysctls(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if name, value, ok := strings.Cut(line, "="); ok && value != "" {
			_ = os.WriteFile(filepath.Join("/proc/sys", name), []byte(value+"\n"), 0o644)
		}
	}
	_ = os.Remove(path)
}

// ContainerPID is the host PID of a running container's process, from
// its Pod status' containerID (containerd://<id>).
func (n *Node) ContainerPID(ctx context.Context, containerID string) (int, error) {
	id, ok := strings.CutPrefix(containerID, "containerd://")
	if !ok {
		return 0, fmt.Errorf("container %q is not containerd's", containerID)
	}
	out, err := n.runtime.Ctr(ctx, "tasks", "ls")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == id {
			var pid int
			if _, err := fmt.Sscan(f[1], &pid); err != nil {
				return 0, fmt.Errorf("ctr tasks ls: %q: %w", line, err)
			}
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no task for container %s in:\n%s", id, out)
}
