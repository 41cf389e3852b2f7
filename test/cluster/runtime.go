package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/promenroll/promenroll/internal/testwait"
)

// Runtime is a containerd of its own (root, state and socket under one
// directory the test owns) running containers with runc, all built from
// their modules into bin/node (make node-bins). Containers get a network
// namespace of their own with only a loopback: nothing they do leaves it.
type Runtime struct {
	dir, sock, bin string
	namespace      string
	// runcRoots are where runc keeps the state of this runtime's
	// containers.
	runcRoots []string
	proc      *process
}

// RuntimeUnsupported says why this machine cannot run containers, or ""
// when it can: root, overlayfs and the cgroup hierarchy are needed.
func RuntimeUnsupported() string {
	if os.Geteuid() != 0 {
		return "running containers needs root (namespaces, overlay mounts, cgroups)"
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil || !bytes.Contains(fs, []byte("\toverlay\n")) {
		return "the kernel offers no overlay filesystem (modprobe overlay)"
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
			return "no cgroup hierarchy is mounted at /sys/fs/cgroup"
		}
	}
	return ""
}

// StartRuntime starts containerd under dir. A containerd a killed run left
// under dir is stopped first.
func StartRuntime(ctx context.Context, dir string) (*Runtime, error) {
	return startRuntime(ctx, dir, runtimeOptions{namespace: runtimeNamespace, logDir: dir})
}

// runtimeOptions say how startRuntime runs containerd: the namespace of
// the containers ctr sees, the configuration of its CRI plugin (TOML, ""
// for the defaults), the network namespace it runs in ("" for this one)
// and where its log goes.
type runtimeOptions struct {
	namespace, cri, netns, logDir string
}

// startRuntime starts containerd under dir.
func startRuntime(ctx context.Context, dir string, o runtimeOptions) (*Runtime, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(root, "bin", "node")
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s missing: run `make node-bins` (make test does; runc needs libseccomp-dev)", filepath.Join(bin, b))
		}
	}
	r := newRuntime(bin, dir, o.namespace)
	// What a killed run left: its shims, mounts and files.
	r.Stop()
	config := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\n[grpc]\n  address = %q\n%s", filepath.Join(dir, "root"), filepath.Join(dir, "state"), r.sock, o.cri)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		return nil, err
	}
	// The shim and runc are found on PATH.
	if err := os.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH")); err != nil {
		return nil, err
	}
	program, args := filepath.Join(bin, "containerd"), []string{"--config", filepath.Join(dir, "config.toml")}
	if o.netns != "" {
		program, args = inNetnsCommand(o.netns, program, args)
	}
	if r.proc, err = startProcess(o.logDir, "containerd", program, args, nil); err != nil {
		return nil, err
	}
	err = testwait.Until(ctx, 30*time.Second, func() (bool, error) {
		if done, why := r.proc.exited(); done {
			return false, testwait.Final(errors.New(why))
		}
		_, err := r.Ctr(ctx, "version")
		return err == nil, err
	})
	if err != nil {
		r.Stop()
		return nil, fmt.Errorf("containerd did not start (see %s): %w", r.proc.log, err)
	}
	return r, nil
}

// newRuntime is the Runtime under dir, not started: its Stop removes what
// one there left.
func newRuntime(bin, dir, namespace string) *Runtime {
	return &Runtime{
		dir: dir, sock: filepath.Join(dir, "containerd.sock"), bin: bin, namespace: namespace,
		runcRoots: []string{filepath.Join("/run/containerd/runc", namespace), filepath.Join(dir, "runc", namespace)},
	}
}

// Import imports an OCI archive (make image's) and returns the names of
// the images it added.
func (r *Runtime) Import(ctx context.Context, archive string) ([]string, error) {
	if _, err := os.Stat(archive); err != nil {
		return nil, fmt.Errorf("%s missing: run `make image` (make test does)", archive)
	}
	before, err := r.Ctr(ctx, "images", "ls", "-q")
	if err != nil {
		return nil, err
	}
	if _, err := r.Ctr(ctx, "images", "import", archive); err != nil {
		return nil, err
	}
	after, err := r.Ctr(ctx, "images", "ls", "-q")
	if err != nil {
		return nil, err
	}
	var added []string
	for _, name := range strings.Fields(after) {
		if !slices.Contains(strings.Fields(before), name) {
			added = append(added, name)
		}
	}
	if len(added) == 0 {
		return nil, fmt.Errorf("%s imported, but no image was added (already there? images: %s)", archive, strings.Join(strings.Fields(after), ", "))
	}
	return added, nil
}

// inNetnsCommand is the command that runs program with args in the named
// network namespace and in every other namespace of this process (the
// mounts in particular: `ip netns exec` would give it a mount namespace of
// its own). nsenter execs program, which keeps the Pdeathsig.
func inNetnsCommand(netns, program string, args []string) (string, []string) {
	return "nsenter", append([]string{"--net=/var/run/netns/" + netns, "--", program}, args...)
}

// Log is containerd's log file.
func (r *Runtime) Log() string { return r.proc.log }

// Ctr runs ctr against this containerd, in the runtime's namespace, and
// returns its standard output (its standard error is in the error).
func (r *Runtime) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(r.bin, "ctr"), append([]string{"--address", r.sock, "--namespace", r.namespace}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// Run is `ctr run` with the containers' standard streams kept under the
// runtime's directory (by default ctr leaves them in /run/containerd/fifo).
func (r *Runtime) Run(ctx context.Context, args ...string) (string, error) {
	return r.Ctr(ctx, append([]string{"run", "--fifo-dir", filepath.Join(r.dir, "fifo")}, args...)...)
}

// runtimeNamespace is the containerd namespace the tests' containers are
// in (the CRI's is k8s.io). The runc shim keeps their state in a fixed
// path outside the runtime's directory unless told otherwise.
const runtimeNamespace = "promenroll-test"

// Stop ends every container (runc delete --force: a container outlives
// its shim), the shims and containerd, and removes what they mounted and
// wrote, under the runtime's directory and in runc's state.
func (r *Runtime) Stop() {
	for _, root := range r.runcRoots {
		ids, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		for _, id := range ids {
			_ = exec.Command(filepath.Join(r.bin, "runc"), "--root", root, "delete", "--force", id.Name()).Run()
		}
		_ = os.RemoveAll(root)
	}
	r.killShims()
	if r.proc != nil {
		r.proc.stop(5 * time.Second)
	}
	// Snapshots and rootfs mounts under dir, deepest first.
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	var under []string
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], r.dir+"/") {
			under = append(under, f[4])
		}
	}
	for i := len(under) - 1; i >= 0; i-- {
		_ = syscall.Unmount(under[i], syscall.MNT_DETACH)
	}
	_ = os.RemoveAll(r.dir)
	// ctr puts a container's cgroup under one named after its namespace.
	removeCgroups(r.namespace)
	// The shims' sockets and runc's default root: the directories go when
	// nothing else uses them.
	for _, d := range []string{"/run/containerd/s", "/run/containerd/runc", "/run/containerd/fifo", "/run/containerd"} {
		_ = os.Remove(d)
	}
}

// killShims kills the shims (and so their containers) that serve this
// runtime's socket: shims outlive containerd, so they are found by their
// command line.
func (r *Runtime) killShims() {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-runc-v2") || !strings.Contains(string(cmdline), r.sock) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
		// A killed shim leaves its socket, named as containerd's
		// shim.SocketAddress names it: the digest of address/namespace/id.
		flags := map[string]string{}
		for i := 1; i+1 < len(args); i++ {
			if strings.HasPrefix(args[i], "-") {
				flags[strings.TrimLeft(args[i], "-")] = args[i+1]
			}
		}
		path := filepath.Join(flags["address"], flags["namespace"], flags["id"])
		for _, p := range []string{path, filepath.Join(path, "debug")} {
			_ = os.Remove(fmt.Sprintf("/run/containerd/s/%x", sha256.Sum256([]byte(p))))
		}
	}
}
