package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/promenroll/promenroll/internal/limit"
	"github.com/promenroll/promenroll/webhook"
)

// serveOnly is `load -serve`: the handlers alone, for pinned runs, with
// the limiter sized by lc as serve sizes it. It prints its URL and serves
// until stdin closes.
func serveOnly(lc limit.Config) error {
	mux, err := newMux(lc)
	if err != nil {
		return err
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	srv.StartTLS()
	defer srv.Close()
	fmt.Println(srv.URL)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// child is a `load -serve` process pinned to CPU 0 with GOMAXPROCS=1.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
}

// startChild starts a pinned server with env added to this process' and
// args after -serve.
func startChild(env []string, args ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", "0", exe, "-serve"}, args...)...)
	cmd.Env = append(append(os.Environ(), "GOMAXPROCS=1"), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("taskset (util-linux) runs the pinned server: %w", err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	url, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("the pinned server did not start: %w", err)
	}
	c.url = strings.TrimSpace(url)
	return c, nil
}

func (c *child) stop() { c.stdin.Close(); _ = c.cmd.Wait() }

func (c *child) pid() int { return c.cmd.Process.Pid }

// pinnedClient calls a child as the API server does: keep-alive, and the
// webhook's timeout on every call.
func pinnedClient(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 512}} //nolint:gosec // the harness' own throw-away certificate
}

// peakRSS is a process' peak resident set (VmHWM); resetPeakRSS starts a
// new peak from the current RSS.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}

func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// enrolledDeployment is deployment as stored after promenroll enrolled it.
const enrolledDeployment = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"api","namespace":"shop","labels":{"app.kubernetes.io/name":"api","monitoring.promenroll.io/scrape":"true","team":"payments"}},
"spec":{"replicas":3,"selector":{"matchLabels":{"app.kubernetes.io/name":"api"}},"template":{"metadata":{"labels":{"app.kubernetes.io/name":"api","monitoring.promenroll.io/scrape":"true"}},
"spec":{"containers":[{"name":"api","image":"registry.example/api:1.0","resources":{"requests":{"cpu":"100m","memory":"128Mi"}}}]}}}}`

func updateReview(obj, old string) []byte {
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID("load"), Kind: metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"},
			Resource:  metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"},
			Operation: admissionv1.Update, Namespace: "shop",
			Object: runtime.RawExtension{Raw: []byte(obj)}, OldObject: runtime.RawExtension{Raw: []byte(old)},
		},
	}
	b, _ := json.Marshal(ar)
	return b
}

// pinned runs the server in a child process on CPU 0 with GOMAXPROCS=1
// (taskset) while this process is the client (run it under `taskset -c 1`,
// as `make bench` does). Per scenario: the server's CPU time per request at
// saturation (its utime+stime from /proc, over closed-loop requests from
// conc clients), then latency open-loop at a fixed rate, measured from each
// request's scheduled time so a stalled server shows.
func pinned(n, conc, rate int, maxDur time.Duration) error {
	srv, err := startChild(nil)
	if err != nil {
		return err
	}
	defer srv.stop()
	url := srv.url
	client := pinnedClient(0)

	scenarios := []scenario{
		{name: "no-op webhook, Deployment CREATE", path: "/noop", body: review("apps", "Deployment", []byte(deployment))},
		{name: "mutate Deployment CREATE", path: webhook.MutatePath, body: review("apps", "Deployment", []byte(deployment)), wantPatch: true},
		{name: "mutate Deployment UPDATE, already enrolled", path: webhook.MutatePath, body: updateReview(enrolledDeployment, enrolledDeployment)},
		// The floor of an UPDATE: its body carries both objects.
		{name: "no-op webhook, the same Deployment UPDATE", path: "/noop", body: updateReview(enrolledDeployment, enrolledDeployment)},
	}
	fmt.Printf("pinned: server on CPU 0 with GOMAXPROCS=1 (pid %d), this client elsewhere; %d requests closed-loop from %d clients, then open-loop at %d req/s\n\n", srv.pid(), n, conc, rate)
	cpu := map[string]time.Duration{}
	for _, s := range scenarios {
		before, err := cpuTime(srv.pid())
		if err != nil {
			return err
		}
		r, err := measure(client, url, s, n, conc, maxDur)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		after, err := cpuTime(srv.pid())
		if err != nil {
			return err
		}
		cpu[s.name] = (after - before) / time.Duration(r.done)
		fmt.Printf("  server CPU per request at saturation: %s\n", cpu[s.name].Round(100*time.Nanosecond))
		lat, missed, err := openLoop(client, url, s, rate, n, maxDur)
		if err != nil {
			return fmt.Errorf("%s open-loop: %w", s.name, err)
		}
		fmt.Printf("  open-loop %d req/s: p50 %s  p99 %s  max %s  (%d sent late: the client could not keep up)\n\n", rate,
			lat.p50.Round(time.Microsecond), lat.p99.Round(time.Microsecond), lat.max.Round(time.Microsecond), missed)
	}
	rss, err := peakRSS(srv.pid())
	if err != nil {
		return err
	}
	fmt.Printf("server peak RSS over these scenarios (the handlers, 5,000 cached Services, 50 Prometheus objects): %.1f MiB\n", mib(rss))
	noop, create, update, noopUpdate := cpu[scenarios[0].name], cpu[scenarios[1].name], cpu[scenarios[2].name], cpu[scenarios[3].name]
	fmt.Printf("ratio: server CPU per request, mutate CREATE / no-op %.2f×; UPDATE of an enrolled object / CREATE %.2f× (a no-op UPDATE / CREATE: %.2f×)\n",
		ratio(create, noop), ratio(update, create), ratio(noopUpdate, create))
	return nil
}

// cpuTime is a process' user plus system CPU time, from /proc/PID/stat
// (clock ticks of 1/100 s).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, errors.Join(err1, err2))
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// openLoop sends n requests (at most rate × maxDur) at fixed intervals
// (runOpenLoop), and returns their latencies, measured from each request's
// scheduled time, and how many were sent more than an interval late.
func openLoop(client *http.Client, base string, s scenario, rate, n int, maxDur time.Duration) (summary, int, error) {
	times := schedule(float64(rate), maxDur)
	times = times[:min(n, len(times))]
	var lat []time.Duration
	failed, late := 0, 0
	for _, r := range runOpenLoop(client, []stream{{url: base + s.path, body: s.body, times: times}})[0] {
		lat = append(lat, r.lat)
		failed += btoi(r.shed || r.failed)
		late += btoi(r.late > time.Second/time.Duration(rate))
	}
	if failed > 0 {
		return summary{}, 0, fmt.Errorf("%d requests failed", failed)
	}
	return summarize(lat), late, nil
}
