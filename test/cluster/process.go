package cluster

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is one program the harness runs: kube-controller-manager, the
// Prometheus Operator, Prometheus. It is started in its own process group
// with Pdeathsig (if the test binary dies without cleaning up, the kernel
// kills it too), its output goes to a log file, and stop ends it.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startProcess starts bin with args, its output appended to logDir/name.log
// (and to also, when not nil).
func startProcess(logDir, name, bin string, args []string, also io.Writer) (*process, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	var out io.Writer = f
	if also != nil {
		out = io.MultiWriter(f, also)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// exited reports whether the process has ended, with its state.
func (p *process) exited() (bool, string) {
	select {
	case <-p.done:
		return true, fmt.Sprintf("%s exited (%v): see %s", p.name, p.cmd.ProcessState, p.log)
	default:
		return false, ""
	}
}

// stop sends SIGTERM to the process group and kills it after grace.
func (p *process) stop(grace time.Duration) {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Leftovers lists what this process started and did not clean up: child
// processes still alive, the harness' network namespace, and what a real
// node leaves on the machine (StartNode). The e2e suite
// and the demo check it after Stop.
func Leftovers() []string {
	var out []string
	self := os.Getpid()
	for _, child := range children(self) {
		// go build and kubectl are short-lived children the tests wait for.
		if child.name != "go" && child.name != "kubectl" {
			out = append(out, fmt.Sprintf("process %d (%s)", child.pid, child.name))
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/var/run/netns/promenroll-e2e-%d", self)); err == nil {
		out = append(out, fmt.Sprintf("network namespace promenroll-e2e-%d", self))
	}
	return append(out, nodeLeftovers()...)
}

// ChildrenOf lists the IDs of the processes whose parent is pid.
func ChildrenOf(pid int) []int {
	var out []int
	for _, c := range children(pid) {
		out = append(out, c.pid)
	}
	return out
}

type child struct {
	pid  int
	name string
}

// children lists the processes whose parent is pid, with their names.
func children(pid int) []child {
	var out []child
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		id, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", p.Name(), "status"))
		if err != nil {
			continue
		}
		var name string
		var ppid int
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Name:"); ok {
				name = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				ppid, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if ppid == pid {
			out = append(out, child{pid: id, name: name})
		}
	}
	return out
}
