package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	proc           *process
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
	r := &Runtime{dir: dir, sock: filepath.Join(dir, "containerd.sock"), bin: bin}
	// What a killed run left: its shims, mounts and files.
	r.Stop()
	config := fmt.Sprintf("version = 3\nroot = %q\nstate = %q\n[grpc]\n  address = %q\n", filepath.Join(dir, "root"), filepath.Join(dir, "state"), r.sock)
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
	if r.proc, err = startProcess(dir, "containerd", filepath.Join(bin, "containerd"), []string{"--config", filepath.Join(dir, "config.toml")}, nil); err != nil {
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

// Log is containerd's log file.
func (r *Runtime) Log() string { return r.proc.log }

// Ctr runs ctr against this containerd, in the test namespace, and
// returns its output (standard output and error).
func (r *Runtime) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(r.bin, "ctr"), append([]string{"--address", r.sock, "--namespace", runtimeNamespace}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// runtimeNamespace is the containerd namespace the tests' containers are
// in; runtimeRuncRoot is where the runc shim keeps their state, a fixed
// path outside the runtime's directory.
const runtimeNamespace = "promenroll-test"

var runtimeRuncRoot = filepath.Join("/run/containerd/runc", runtimeNamespace)

// Stop ends every container (runc delete --force: a container outlives
// its shim), the shims and containerd, and removes what they mounted and
// wrote, under the runtime's directory and in runc's state.
func (r *Runtime) Stop() {
	if ids, err := os.ReadDir(runtimeRuncRoot); err == nil {
		for _, id := range ids {
			_ = exec.Command(filepath.Join(r.bin, "runc"), "--root", runtimeRuncRoot, "delete", "--force", id.Name()).Run()
		}
		_ = os.RemoveAll(runtimeRuncRoot)
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
		if strings.HasSuffix(args[0], "containerd-shim-runc-v2") && strings.Contains(string(cmdline), r.sock) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
