package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// podNetwork hands out Pod IPs and opens listeners on them.
//
// EndpointSlices and Endpoints refuse loopback addresses, so Services can
// only have endpoints on other addresses. When it can (root, iproute2), the
// harness creates a network namespace of its own joined to this one by a
// veth pair, on a /24 of 198.18.0.0/15 (RFC 2544's range for benchmark
// tests), and puts every Pod IP there. Nothing else is routed there and no
// traffic leaves the machine. Otherwise Pod IPs are 127.0.0.N: Pods and
// PodMonitors work, Services get no endpoints.
type podNetwork struct {
	netns  string // "" when Pod IPs are on loopback
	hostIf string
	podIf  string
	prefix string // "198.18.X." or "127.0.0."

	mu   sync.Mutex
	next int
}

// Namespaced reports whether Pod IPs live in the harness' own network
// namespace (and so Services get endpoints).
func (n *podNetwork) Namespaced() bool { return n.netns != "" }

// newPodNetwork sets up the network namespace, or says why it fell back to
// loopback (why is "" when the namespace is in use).
func newPodNetwork() (n *podNetwork, why string) {
	fallback := &podNetwork{prefix: "127.0.0.", next: 10}
	if os.Geteuid() != 0 {
		return fallback, "not root: network namespaces need CAP_NET_ADMIN"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fallback, "iproute2's ip command is missing (apt-get install iproute2)"
	}
	pid := os.Getpid()
	n = &podNetwork{
		netns:  fmt.Sprintf("promenroll-e2e-%d", pid),
		hostIf: fmt.Sprintf("pe%dh", pid%10000000),
		podIf:  fmt.Sprintf("pe%dp", pid%10000000),
		prefix: fmt.Sprintf("198.18.%d.", pid%250),
		next:   10,
	}
	removeStaleNetns()
	steps := [][]string{
		{"netns", "add", n.netns},
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.podIf},
		{"link", "set", n.podIf, "netns", n.netns},
		{"addr", "add", n.prefix + "1/24", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.netns, "link", "set", "lo", "up"},
		{"-n", n.netns, "link", "set", n.podIf, "up"},
		// Pod IPs are /32s: the way back to the host side needs a route.
		{"-n", n.netns, "route", "add", n.prefix + "0/24", "dev", n.podIf},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			n.close()
			return fallback, fmt.Sprintf("could not set up network namespace %s: %v", n.netns, err)
		}
	}
	return n, ""
}

func ip(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// removeStaleNetns removes namespaces that earlier runs killed before they
// could clean up (their process is gone).
func removeStaleNetns() {
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "promenroll-e2e-%d", &pid); err != nil {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			_ = ip("netns", "del", e.Name())
		}
	}
}

// allocate returns a new Pod IP, added to the namespace's interface.
func (n *podNetwork) allocate() (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.next > 250 {
		return "", errors.New("pod network: out of addresses (240 Pods)")
	}
	addr := n.prefix + fmt.Sprint(n.next)
	n.next++
	if n.netns != "" {
		if err := ip("-n", n.netns, "addr", "add", addr+"/32", "dev", n.podIf); err != nil {
			return "", err
		}
	}
	return addr, nil
}

// listen opens a TCP listener on addr inside the namespace.
func (n *podNetwork) listen(addr string) (net.Listener, error) {
	if n.netns == "" {
		return net.Listen("tcp", addr)
	}
	return listenIn(n.netns, addr)
}

// listenIn opens a TCP listener on addr inside the named network
// namespace: the listening socket belongs to the namespace it was created
// in.
func listenIn(netns, addr string) (l net.Listener, err error) {
	err = inNetns(netns, func() error {
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// inNetns runs fn inside the named network namespace, on one OS thread
// that switches into it and back before it is unlocked. The thread must
// not end instead: the kernel sends a child's Pdeathsig when the thread
// that started it ends, and any thread may have started one. If it cannot
// switch back, it stays locked and Go retires it with the goroutine.
func inNetns(netns string, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer own.Close()
		target, err := os.Open("/var/run/netns/" + netns)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("setns %s: %w", netns, err)
			return
		}
		err = fn()
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- err
	}()
	return <-ch
}

// close removes the namespace (and with it the veth pair and every Pod IP).
func (n *podNetwork) close() {
	if n == nil || n.netns == "" {
		return
	}
	_ = ip("link", "del", n.hostIf)
	_ = ip("netns", "del", n.netns)
}
