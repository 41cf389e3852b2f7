// Package node runs what users install on a container runtime built from
// its modules (containerd and runc, bin/node): the images `make image`
// assembles start as the chart runs them.
package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
)

// images are the archives make image writes, and their names.
var images = map[string]string{
	"promenroll-image.tar": "docker.io/promenroll/promenroll:",
	"workload-image.tar":   "docker.io/promenroll/workload:test",
}

func startRuntime(t *testing.T) *cluster.Runtime {
	t.Helper()
	if why := cluster.RuntimeUnsupported(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root on a kernel that runs containers: %s", why)
		}
		t.Skip(why)
	}
	// A fixed directory, so that the next run cleans up after a killed one.
	r, err := cluster.StartRuntime(t.Context(), filepath.Join(os.TempDir(), "promenroll-node-runtime"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(r.Log()); err == nil {
				t.Logf("containerd's log (%s), last lines:\n%s", r.Log(), tail(string(b), 30))
			}
		}
		r.Stop()
	})
	return r
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// importImages imports make image's archives and returns the images'
// names.
func importImages(t *testing.T, r *cluster.Runtime) map[string]string {
	t.Helper()
	root, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for archive, prefix := range images {
		added, err := r.Import(t.Context(), filepath.Join(root, "bin", archive))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range added {
			if strings.HasPrefix(n, prefix) {
				names[archive] = n
			}
		}
		if names[archive] == "" {
			t.Fatalf("%s imported, but no image named %s*: %v", archive, prefix, added)
		}
	}
	return names
}

// TestImagesRunAsTheChartRunsThem: on containerd and runc, read-only root
// filesystem as the chart sets it and the image's own user:
//   - promenroll's image starts its binary (`promenroll version`);
//   - it has no shell;
//   - the workload image's process runs as 65532 on a read-only root and
//     serves its metrics inside its own network namespace.
func TestImagesRunAsTheChartRunsThem(t *testing.T) {
	r := startRuntime(t)
	names := importImages(t, r)
	ctx := t.Context()

	out, err := r.Run(ctx, "--rm", "--read-only", names["promenroll-image.tar"], "version", "/promenroll", "version")
	if err != nil || !strings.Contains(out, "promenroll ") {
		t.Errorf("promenroll version in its image: %v\n%s", err, out)
	}
	if out, err := r.Run(ctx, "--rm", "--read-only", names["promenroll-image.tar"], "shell", "/bin/sh", "-c", "true"); err == nil || !strings.Contains(fmt.Sprint(out, err), "no such file or directory") {
		t.Errorf("a shell ran in promenroll's image: %v\n%s", err, out)
	}

	// The workload, detached: its process is inspected from the host.
	if _, err := r.Run(ctx, "-d", "--read-only", names["workload-image.tar"], "workload"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = r.Ctr(c, "task", "kill", "--signal", "SIGKILL", "workload")
		_, _ = r.Ctr(c, "task", "delete", "--force", "workload")
		_, _ = r.Ctr(c, "container", "delete", "workload")
	})
	pid := taskPID(t, r, "workload")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "\nUid:\t65532\t65532\t65532\t65532\n") {
		t.Errorf("the workload does not run as 65532 (the image's USER):\n%s", status)
	}
	mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !rootReadOnly(string(mounts)) {
		t.Errorf("the workload's root filesystem is writable:\n%s", mounts)
	}
	body := inNetns(t, pid, "http://127.0.0.1:8080/metrics")
	if !strings.Contains(body, "workload_scrapes_total 1") {
		t.Errorf("the workload's /metrics, from inside its network namespace:\n%s", body)
	}
}

// taskPID is a running task's process id on the host.
func taskPID(t *testing.T, r *cluster.Runtime, id string) int {
	t.Helper()
	var pid int
	testwait.For(t, id+" running", 30*time.Second, func() (bool, error) {
		out, err := r.Ctr(t.Context(), "task", "ls")
		if err != nil {
			return false, err
		}
		for _, l := range strings.Split(out, "\n") {
			f := strings.Fields(l)
			if len(f) == 3 && f[0] == id && f[2] == "RUNNING" {
				_, err := fmt.Sscan(f[1], &pid)
				return err == nil, err
			}
		}
		return false, fmt.Errorf("not running: %s", out)
	})
	return pid
}

// rootReadOnly: the mount at / in a mountinfo is read-only.
func rootReadOnly(mountinfo string) bool {
	for _, l := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && f[4] == "/" {
			return strings.Split(f[5], ",")[0] == "ro"
		}
	}
	return false
}

// inNetns GETs url from inside pid's network namespace: the container's
// loopback, which nothing outside it can reach.
func inNetns(t *testing.T, pid int, url string) string {
	t.Helper()
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// This goroutine's thread enters the namespace and is discarded
		// with it (never unlocked).
		runtime.LockOSThread()
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		var body string
		err = testwait.Until(t.Context(), 30*time.Second, func() (bool, error) {
			// A dialer bound to this thread: no new goroutine may run the
			// connect on another thread, outside the namespace.
			conn, err := net.DialTimeout("tcp", "127.0.0.1:8080", time.Second)
			if err != nil {
				return false, err
			}
			defer conn.Close()
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Close = true
			if err := req.Write(conn); err != nil {
				return false, err
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(conn)
			body = string(b)
			return strings.Contains(body, "200 OK"), err
		})
		done <- result{body, err}
	}()
	res := <-done
	if res.err != nil {
		t.Fatalf("GET %s in the container's network namespace: %v", url, res.err)
	}
	return res.body
}
