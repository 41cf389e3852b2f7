// Package cluster runs a real local control plane (etcd and kube-apiserver
// through controller-runtime's envtest, with the Prometheus Operator and
// cert-manager CRDs), installs promenroll's webhook configurations from
// deploy/ as they are, and runs the real promenroll binary against it. The
// e2e tests and `make demo` share it. Everything listens on 127.0.0.1.
package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/promenroll/promenroll/internal/testwait"
)

// LogTails returns the last n lines of each log in LogDir, for failure
// reports.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	entries, _ := os.ReadDir(c.LogDir)
	var logs []string
	for _, e := range entries {
		logs = append(logs, filepath.Join(c.LogDir, e.Name()))
	}
	for _, log := range logs {
		data, err := os.ReadFile(log)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- last %d lines of %s ---\n%s\n", len(lines), filepath.Base(log), strings.Join(lines, "\n"))
	}
	return b.String()
}

// Versions of the modules the CRDs come from (located with
// `go mod download -json`, never copied into this repository).
const (
	PrometheusOperatorVersion = "v0.94.1"
	CertManagerVersion        = "v1.21.2"
	// Namespace is promenroll's namespace in deploy/.
	Namespace = "promenroll-system"
)

// Options configure Start.
type Options struct {
	// PolicyFile is the policy promenroll serves; it may be rewritten while
	// running (hot reload).
	PolicyFile string
	// Log receives promenroll's and the control plane's output.
	Log io.Writer
	// Bare starts the control plane with the CRDs only: no webhook
	// configurations, no promenroll. For tests that install promenroll
	// themselves (the Helm chart's render) and run it with Serve.
	Bare bool
	// NoCertManagerCRDs leaves cert-manager's CRDs out, as in a cluster
	// without cert-manager (InstallCertManagerCRDs adds them later).
	NoCertManagerCRDs bool
	// AdmissionClientCert makes the API server present a client
	// certificate to every webhook (its admission configuration's
	// kubeConfigFile), signed by the CA in Cluster.AdmissionClientCA.
	AdmissionClientCert bool
	// Node prepares the control plane for a real node (StartNode): the
	// ServiceAccount admission plugin (Pods get their token volume), the
	// API server's certificate valid for the kubernetes Service's
	// ClusterIP too, webhook Services called at their endpoints' IPs
	// (--enable-aggregator-routing: no kube-proxy on the API server's
	// side), and the controllers Pods depend on (ServiceAccounts,
	// kube-root-ca.crt, garbage collection) in Monitoring's
	// kube-controller-manager.
	Node bool
}

// Cluster is a running control plane with promenroll installed.
type Cluster struct {
	Root       string // repository root
	Dir        string // scratch folder: kubeconfig, certificates, binaries
	Kubeconfig string
	Config     *rest.Config
	Client     client.Client

	env     *envtest.Environment
	opts    Options
	ca      *ca
	certDir string
	port    int
	probe   string
	metrics string
	binary  string

	// apiCA signed the API server's certificate (Options.Node).
	apiCA *ca
	node  *Node

	mu         sync.Mutex
	proc       *process // promenroll serve
	readyAfter time.Duration

	// AdmissionClientCA is the PEM of the CA that signed the API server's
	// admission client certificate (Options.AdmissionClientCert).
	AdmissionClientCA []byte

	// LogDir holds the logs of the programs the monitoring stack runs.
	LogDir  string
	monOnce sync.Once
	mon     *Monitoring
	monErr  error
}

// RepoRoot finds the repository root from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/promenroll/promenroll\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the promenroll repository")
		}
		dir = parent
	}
}

// Start brings up etcd, kube-apiserver, the CRDs, promenroll's webhook
// configurations and promenroll itself, and waits until promenroll is ready.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "promenroll-cluster-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{Root: root, Dir: dir, opts: opts, certDir: filepath.Join(dir, "tls"), LogDir: filepath.Join(dir, "logs")}
	// A failed start returns (nil, err): stop what was started through a
	// copy, not the named result.
	started := c
	defer func() {
		if err != nil {
			started.Stop()
		}
	}()
	assets := filepath.Join(root, "bin", "k8s")
	for _, b := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("%s missing in %s: run `make test-bins`", b, assets)
		}
	}
	crds, err := crdPaths(ctx, dir)
	if err != nil {
		return nil, err
	}
	if opts.NoCertManagerCRDs {
		crds = crds[:1]
	}
	binary := filepath.Join(dir, "promenroll")
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/promenroll")
	build.Dir, build.Stdout, build.Stderr = root, opts.Log, opts.Log
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build promenroll: %w", err)
	}
	c.binary = binary

	c.env = &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDInstallOptions:        envtest.CRDInstallOptions{Paths: crds, ErrorIfPathMissing: true},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	if opts.AdmissionClientCert {
		if err := c.admissionClientCert(); err != nil {
			return nil, err
		}
	}
	if opts.Node {
		if err := c.apiServerForNode(); err != nil {
			return nil, err
		}
	}
	if !opts.Bare {
		c.env.WebhookInstallOptions = envtest.WebhookInstallOptions{
			Paths:            []string{filepath.Join(root, "deploy", "base", "webhooks.yaml")},
			LocalServingHost: "127.0.0.1",
		}
	}
	if c.Config, err = c.env.Start(); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	c.port = c.env.WebhookInstallOptions.LocalServingPort
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, c.env.KubeConfig, 0o600); err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := monv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if c.Client, err = client.New(c.Config, client.Options{Scheme: scheme}); err != nil {
		return nil, err
	}
	if opts.Bare {
		return c, nil
	}
	if err := c.useOwnCA(ctx); err != nil {
		return nil, err
	}
	if err := c.StartWebhook(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// apiServerForNode configures the API server for Options.Node: its own
// CA and certificate (localhost, 127.0.0.1 and the kubernetes Service's
// ClusterIP and names, which Pods' in-cluster clients verify) and
// service-account signing key, written where envtest looks before it
// would generate its own.
func (c *Cluster) apiServerForNode() error {
	var err error
	if c.apiCA, err = newCA(); err != nil {
		return err
	}
	dir := filepath.Join(c.Dir, "apiserver")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	hosts := []string{"localhost", "127.0.0.1", serviceIP, "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	if _, err := c.apiCA.issue(filepath.Join(dir, "apiserver.crt"), filepath.Join(dir, "apiserver.key"), "kube-apiserver", x509.ExtKeyUsageServerAuth, hosts...); err != nil {
		return err
	}
	// The key signing ServiceAccount tokens; the API server reads the
	// public key from the certificate.
	if _, err := c.apiCA.issue(filepath.Join(dir, "sa-signer.crt"), filepath.Join(dir, "sa-signer.key"), "service-accounts", x509.ExtKeyUsageClientAuth); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), c.apiCA.certPEM, 0o600); err != nil {
		return err
	}
	api := c.env.ControlPlane.GetAPIServer()
	api.CertDir = dir
	api.SecureServing.CA = c.apiCA.certPEM
	api.Configure().Disable("disable-admission-plugins").Set("enable-aggregator-routing", "true")
	return nil
}

// useOwnCA points the installed webhook configurations at a CA this package
// holds, so the serving certificate can be rotated like cert-manager does.
func (c *Cluster) useOwnCA(ctx context.Context) error {
	var err error
	if c.ca, err = newCA(); err != nil {
		return err
	}
	if err := os.MkdirAll(c.certDir, 0o700); err != nil {
		return err
	}
	if _, err := c.ca.writeServing(c.certDir); err != nil {
		return err
	}
	var mut admissionregistrationv1.MutatingWebhookConfiguration
	if err := c.Client.Get(ctx, client.ObjectKey{Name: "promenroll"}, &mut); err != nil {
		return fmt.Errorf("the mutating webhook configuration from deploy/ is not installed: %w", err)
	}
	for i := range mut.Webhooks {
		mut.Webhooks[i].ClientConfig.CABundle = c.ca.certPEM
	}
	if err := c.Client.Update(ctx, &mut); err != nil {
		return err
	}
	var val admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.Client.Get(ctx, client.ObjectKey{Name: "promenroll"}, &val); err != nil {
		return fmt.Errorf("the validating webhook configuration from deploy/ is not installed: %w", err)
	}
	for i := range val.Webhooks {
		val.Webhooks[i].ClientConfig.CABundle = c.ca.certPEM
	}
	return c.Client.Update(ctx, &val)
}

// crdPaths downloads (into the module cache) the modules that ship the CRDs
// and returns the CRD files promenroll's tests need.
func crdPaths(ctx context.Context, scratch string) ([]string, error) {
	op, err := moduleDir(ctx, scratch, "github.com/prometheus-operator/prometheus-operator@"+PrometheusOperatorVersion)
	if err != nil {
		return nil, err
	}
	cm, err := moduleDir(ctx, scratch, "github.com/cert-manager/cert-manager@"+CertManagerVersion)
	if err != nil {
		return nil, err
	}
	// Every monitoring.coreos.com CRD: the operator waits for each kind it
	// watches.
	return []string{filepath.Join(op, "example", "prometheus-operator-crd"), filepath.Join(cm, "deploy", "crds")}, nil
}

// OperatorCRD is the path of one prometheus-operator CRD file (e.g.
// "prometheusagents") at PrometheusOperatorVersion.
func (c *Cluster) OperatorCRD(ctx context.Context, resource string) (string, error) {
	op, err := moduleDir(ctx, c.Dir, "github.com/prometheus-operator/prometheus-operator@"+PrometheusOperatorVersion)
	if err != nil {
		return "", err
	}
	return filepath.Join(op, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+resource+".yaml"), nil
}

func moduleDir(ctx context.Context, scratch, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	cmd.Dir = scratch // outside any module: nothing is added to a go.mod
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %w %s", modVersion, err, info.Error)
	}
	return info.Dir, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartWebhook runs `promenroll serve` and waits until /readyz answers 200.
// extraArgs are appended to the command line (later flags win).
func (c *Cluster) StartWebhook(ctx context.Context, extraArgs ...string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc != nil {
		return errors.New("promenroll is already running")
	}
	var err error
	if c.probe, err = freeAddr(); err != nil {
		return err
	}
	if c.metrics, err = freeAddr(); err != nil {
		return err
	}
	args := []string{"serve",
		"--policy", c.opts.PolicyFile,
		"--tls-mode", "existingSecret",
		"--cert-dir", c.certDir,
		"--bind-host", "127.0.0.1",
		"--port", fmt.Sprint(c.port),
		"--metrics-bind-address", c.metrics,
		"--health-probe-bind-address", c.probe,
		"--kubeconfig", c.Kubeconfig,
		"--namespace", Namespace,
		"--shutdown-delay", "1ms",
		"--crd-check-interval", "1s",
		// The suite's webhook does not report; StartReporter runs a
		// replica that does, against the test's Prometheus.
		"--report-interval=-1s",
		// TestAlertmanagerConfigGate points the CRD's conversion here.
		"--serve-conversion",
		// and its Secret warnings here.
		"--watch-secrets",
	}
	start := time.Now()
	p, err := startProcess(c.LogDir, "promenroll", c.binary, append(args, extraArgs...), c.opts.Log)
	if err != nil {
		return err
	}
	c.proc = p

	// Polled every 10ms: ReadyAfter is a start-up figure.
	err = testwait.Poll(ctx, 10*time.Millisecond, 60*time.Second, func() (bool, error) {
		select {
		case <-p.done:
			c.proc = nil
			return false, testwait.Final(fmt.Errorf("promenroll exited during start-up: %v", p.cmd.ProcessState))
		default:
		}
		resp, err := http.Get("http://" + c.probe + "/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("promenroll did not become ready within 60s: %w", err)
	}
	c.readyAfter = time.Since(start)
	return nil
}

// ReadyAfter is how long the last StartWebhook took from starting the
// process to the first 200 of /readyz.
func (c *Cluster) ReadyAfter() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readyAfter
}

// StopWebhook stops promenroll gracefully (SIGTERM), killing it after 20s.
func (c *Cluster) StopWebhook() { c.BeginStopWebhook()() }

// BeginStopWebhook sends SIGTERM and returns a function that waits for
// promenroll to exit (killing it after 20s) and returns its exit code (-1:
// killed, or not running). In between, promenroll is shutting down.
func (c *Cluster) BeginStopWebhook() func() int {
	c.mu.Lock()
	proc := c.proc
	c.mu.Unlock()
	if proc == nil {
		return func() int { return -1 }
	}
	_ = proc.cmd.Process.Signal(syscall.SIGTERM)
	return func() int {
		select {
		case <-proc.done:
		case <-time.After(20 * time.Second):
			_ = proc.cmd.Process.Kill()
			<-proc.done
		}
		c.mu.Lock()
		if c.proc == proc {
			c.proc = nil
		}
		c.mu.Unlock()
		return proc.cmd.ProcessState.ExitCode()
	}
}

// admissionClientCert writes a client CA, a client certificate and the
// admission configuration that has the API server present it to every
// webhook ("*"), and passes it to kube-apiserver.
func (c *Cluster) admissionClientCert() error {
	dir := filepath.Join(c.Dir, "admission")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	clientCA, err := newCA()
	if err != nil {
		return err
	}
	crt, key := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if _, err := clientCA.issue(crt, key, "kube-apiserver-admission", x509.ExtKeyUsageClientAuth); err != nil {
		return err
	}
	c.AdmissionClientCA = clientCA.certPEM
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate: %s
    client-key: %s
`, crt, key), 0o600); err != nil {
		return err
	}
	config := filepath.Join(dir, "admission.yaml")
	var plugins strings.Builder
	for _, p := range []string{"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"} {
		fmt.Fprintf(&plugins, `- name: %s
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %s
`, p, kubeconfig)
	}
	if err := os.WriteFile(config, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"+plugins.String()), 0o600); err != nil {
		return err
	}
	c.env.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", config)
	return nil
}

// InstallCertManagerCRDs adds cert-manager's CRDs to a cluster started
// without them.
func (c *Cluster) InstallCertManagerCRDs(ctx context.Context) error {
	crds, err := crdPaths(ctx, c.Dir)
	if err != nil {
		return err
	}
	_, err = envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{Paths: crds[1:], ErrorIfPathMissing: true})
	return err
}

// Reporter is a promenroll replica that reports the monitoring status.
type Reporter struct {
	*Replica
	// MetricsURL is its /metrics.
	MetricsURL string
}

// StartReporter runs a second `promenroll serve` that reports the
// monitoring status every interval against the test's Prometheus: its own
// ports and its own Lease (--lease names it), so it is the leader at once;
// extraArgs come last (a later --kubeconfig wins). It waits for its first
// completed cycle.
func (c *Cluster) StartReporter(ctx context.Context, m *Monitoring, interval time.Duration, extraArgs ...string) (*Reporter, error) {
	probe, err := freeAddr()
	if err != nil {
		return nil, err
	}
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := append([]string{"serve",
		"--policy", c.opts.PolicyFile,
		"--tls-mode", "existingSecret",
		"--cert-dir", c.certDir,
		"--lease", "promenroll-reporter",
		"--bind-host", "127.0.0.1",
		"--port", fmt.Sprint(port),
		"--metrics-bind-address", metrics,
		"--health-probe-bind-address", probe,
		"--kubeconfig", c.Kubeconfig,
		"--namespace", Namespace,
		"--shutdown-delay", "1ms",
		"--crd-check-interval", "1s",
		"--report-interval", interval.String(),
		"--prometheus-url", MonitoringNamespace + "/" + PrometheusName + "=" + m.PrometheusURL,
	}, extraArgs...)
	rep, err := c.Serve("promenroll-reporter", args...)
	if err != nil {
		return nil, err
	}
	r := &Reporter{Replica: rep, MetricsURL: "http://" + metrics + "/metrics"}
	err = testwait.Poll(ctx, 100*time.Millisecond, 2*time.Minute, func() (bool, error) {
		if done, how := rep.Exited(); done {
			return false, testwait.Final(fmt.Errorf("the reporter exited: %s", how))
		}
		v, err := r.Metric("promenroll_status_last_success_timestamp_seconds")
		return err == nil && v > 0, err
	})
	if err != nil {
		rep.Stop()
		return nil, fmt.Errorf("the reporter completed no cycle: %w", err)
	}
	return r, nil
}

// Metric is the sum of a metric's samples on the reporter's /metrics.
func (r *Reporter) Metric(name string, labels ...string) (float64, error) {
	resp, err := http.Get(r.MetricsURL)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum := 0.0
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// Replica is a promenroll process started with Serve.
type Replica struct{ p *process }

// Serve runs the promenroll binary with args (a `serve` command line of the
// caller's choosing), its output in LogDir/name.log. Stop it with Stop; the
// cluster's Stop does not.
func (c *Cluster) Serve(name string, args ...string) (*Replica, error) {
	p, err := startProcess(c.LogDir, name, c.binary, args, c.opts.Log)
	if err != nil {
		return nil, err
	}
	return &Replica{p: p}, nil
}

// Stop sends SIGTERM and waits up to 20s before killing; it returns the
// exit code (-1 if killed).
func (r *Replica) Stop() int {
	r.p.stop(20 * time.Second)
	return r.p.cmd.ProcessState.ExitCode()
}

// Exited reports whether the replica has ended, and how.
func (r *Replica) Exited() (bool, string) { return r.p.exited() }

// Readyz returns the HTTP status of promenroll's /readyz (0: no answer).
func (c *Cluster) Readyz() int {
	resp, err := http.Get("http://" + c.probe + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// RotateCertificate writes a new serving key and certificate from the same
// CA, as cert-manager renewing the Secret does, and returns its serial.
func (c *Cluster) RotateCertificate() (*big.Int, error) { return c.ca.writeServing(c.certDir) }

// ServingSerial is the serial number of the certificate promenroll presents.
func (c *Cluster) ServingSerial() (*big.Int, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", fmt.Sprintf("127.0.0.1:%d", c.port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reading the serial only
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// WebhookCA is the CA the webhook configurations trust, and the files of
// the serving certificate it signed (valid for 127.0.0.1), for a test's own
// webhook server.
func (c *Cluster) WebhookCA() (caPEM []byte, certFile, keyFile string) {
	return c.ca.certPEM, filepath.Join(c.certDir, "tls.crt"), filepath.Join(c.certDir, "tls.key")
}

// WebhookAddr is the webhook's TLS address.
func (c *Cluster) WebhookAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.port) }

// MetricsURL is promenroll's /metrics.
func (c *Cluster) MetricsURL() string { return "http://" + c.metrics + "/metrics" }

// Kubectl runs the real kubectl against the cluster. stdin may be empty.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Root, "bin", "k8s", "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Promenroll runs the promenroll binary with args (check, audit, ...).
func (c *Cluster) Promenroll(ctx context.Context, args ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, c.binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Stop stops promenroll and the control plane and removes the scratch
// folder. Safe to call more than once.
func (c *Cluster) Stop() {
	c.mon.stop()
	c.node.Stop()
	c.StopWebhook()
	if c.env != nil {
		_ = c.env.Stop()
		c.env = nil
	}
	if c.Dir != "" {
		_ = os.RemoveAll(c.Dir)
	}
}
