package chart

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/postrenderer"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/internal/testwait"
	"github.com/promenroll/promenroll/test/cluster"
	"github.com/promenroll/promenroll/test/manifests"
)

// TestInstall runs the installs against one local control plane that has
// the Prometheus Operator's CRDs and not cert-manager's:
//   - `kubectl apply -k deploy/base` works with no other prerequisite;
//   - every ci/*-values.yaml render passes a server-side dry-run apply
//     (certManager once cert-manager's CRDs are added);
//   - `helm install` (Helm's SDK, the default selfManaged TLS, clientCA
//     set) against the API server, promenroll run as its ServiceAccount
//     with the chart's RBAC and arguments: the Secret is filled, the API
//     server calls the webhooks with its admission client certificate
//     (others are refused), certificates rotate under load with no failed
//     admission, the second replica takes over when the leader stops;
//   - `helm uninstall` leaves nothing behind and writes are no longer
//     intercepted;
//   - `helm install` with policy.enrollment.engine native and no replica:
//     the API server enrolls Deployments with the rendered policies, a
//     policy change is rolled out by `helm upgrade` with its compile, and
//     `helm uninstall` removes the policies (testNativeInstall).
func TestInstall(t *testing.T) {
	if _, err := os.Stat(filepath.Join(repoRoot(t), "bin", "k8s", "kube-apiserver")); err != nil {
		t.Fatal("bin/k8s/kube-apiserver missing: run `make test-bins` (make test does)")
	}
	ctx := t.Context()
	c := startCluster(t, cluster.Options{Bare: true, NoCertManagerCRDs: true, AdmissionClientCert: true})

	t.Run("kustomize base without cert-manager", func(t *testing.T) {
		out, errOut, err := c.Kubectl(ctx, "", "apply", "--server-side", "-k", filepath.Join(repoRoot(t), "deploy", "base"))
		if err != nil {
			t.Fatalf("kubectl apply -k deploy/base: %v\n%s%s", err, out, errOut)
		}
		for _, obj := range []string{"secret/promenroll-tls", "lease.coordination.k8s.io/promenroll-tls", "validatingwebhookconfiguration.admissionregistration.k8s.io/promenroll", "prometheusrule.monitoring.coreos.com/promenroll"} {
			if !strings.Contains(out, obj) {
				t.Errorf("%s not applied:\n%s", obj, out)
			}
		}
		// Removed again, but for the namespace (no namespace controller
		// runs here to finish deleting it): the chart installs the same
		// names below.
		rendered, _, err := c.Kubectl(ctx, "", "kustomize", filepath.Join(repoRoot(t), "deploy", "base"))
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, doc := range strings.Split(rendered, "\n---\n") {
			if !strings.Contains(doc, "\nkind: Namespace\n") {
				keep = append(keep, doc)
			}
		}
		if out, errOut, err := c.Kubectl(ctx, strings.Join(keep, "\n---\n"), "delete", "-f", "-"); err != nil {
			t.Fatalf("kubectl delete: %v\n%s%s", err, out, errOut)
		}
	})

	t.Run("server-side dry-run of every ci render", func(t *testing.T) {
		for name, vals := range ciValues(t) {
			if tlsMode(vals) == "certManager" {
				continue
			}
			dryRunApply(t, c, name, vals)
		}
		if err := c.InstallCertManagerCRDs(ctx); err != nil {
			t.Fatal(err)
		}
		dryRunApply(t, c, "cert-manager-values.yaml", ciValues(t)["cert-manager-values.yaml"])
	})

	t.Run("helm install with self-managed TLS", func(t *testing.T) {
		testSelfManagedInstall(t, c)
	})

	t.Run("helm install with native enrollment, no promenroll running", func(t *testing.T) {
		testNativeInstall(t, c)
	})
}

// startCluster starts a local control plane for the test; its cleanup
// prints the logs' last lines if the test failed, and stops it.
func startCluster(t *testing.T, opts cluster.Options) *cluster.Cluster {
	t.Helper()
	c, err := cluster.Start(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.LogTails(40))
		}
		c.Stop()
	})
	return c
}

func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := cluster.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func dryRunApply(t *testing.T, c *cluster.Cluster, name string, vals map[string]any) {
	t.Helper()
	out, err := render(t, vals)
	if err != nil {
		t.Fatal(err)
	}
	createNamespace(t, c, namespace)
	stdout, stderr, err := c.Kubectl(t.Context(), out, "apply", "--dry-run=server", "-f", "-")
	if err != nil {
		t.Errorf("%s: the API server refuses the render: %v\n%s", name, err, stderr)
		return
	}
	in, err := manifests.Parse(name, []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, docs := range in.ByKind {
		total += len(docs)
	}
	if n := strings.Count(stdout, "(server dry run)"); n != total {
		t.Errorf("%s: %d of %d objects applied:\n%s", name, n, total, stdout)
	}
}

// helmConfig is Helm's action configuration for the local control plane,
// release records in Secrets as `helm` keeps them.
func helmConfig(t *testing.T, kubeconfig string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	ns := namespace
	flags.Namespace = &ns
	cfg := action.NewConfiguration()
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// urlClientConfig is a Helm post-renderer: the local API server cannot
// reach a Service, so the webhooks call the replicas' address instead, as
// envtest does for every webhook it installs. Nothing else changes.
type urlClientConfig struct{ base string }

var serviceRef = regexp.MustCompile(`(?m)^(\s*)service: \{name: [^,]+, namespace: [^,]+, path: (/\w+), port: 443\}$`)

func (u urlClientConfig) Run(rendered *bytes.Buffer) (*bytes.Buffer, error) {
	out := serviceRef.ReplaceAll(rendered.Bytes(), []byte("${1}url: "+u.base+"${2}"))
	if bytes.Equal(out, rendered.Bytes()) {
		return nil, errors.New("no webhook clientConfig to point at the local replicas")
	}
	return bytes.NewBuffer(out), nil
}

// saKubeconfig is the admin kubeconfig impersonating promenroll's
// ServiceAccount, so the replicas have exactly the chart's RBAC.
func saKubeconfig(t *testing.T, c *cluster.Cluster, sa string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + namespace + ":" + sa
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	path := filepath.Join(t.TempDir(), "promenroll-sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// balancer is the Service in front of the replicas: each connection goes
// to the next replica that accepts it.
type balancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint64
	wg       sync.WaitGroup
}

func newBalancer(t *testing.T, backends ...string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backends: backends}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

func (b *balancer) port() int { return b.ln.Addr().(*net.TCPAddr).Port }

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		conn, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer conn.Close()
			start := b.next.Add(1)
			for i := range len(b.backends) {
				up, err := net.DialTimeout("tcp", b.backends[(int(start)+i)%len(b.backends)], time.Second)
				if err != nil {
					continue
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
				go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
				<-done
				return
			}
		}()
	}
}

type replica struct {
	name    string
	addr    string
	proc    *cluster.Replica
	metrics string
	probe   string
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// metric returns the sum of the samples of name whose labels contain
// match, or -1 if there are none.
func (r *replica) metric(name, match string) float64 {
	resp, err := http.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	sum, found := 0.0, false
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, name) && strings.Contains(line, match) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				sum, found = sum+v, true
			}
		}
	}
	if !found {
		return -1
	}
	return sum
}

func (r *replica) ready() bool {
	resp, err := http.Get("http://" + r.probe + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (r *replica) leading() bool {
	return r.metric("leader_election_master_status", `name="promenroll-tls"`) == 1
}

func testSelfManagedInstall(t *testing.T, c *cluster.Cluster) {
	ctx := t.Context()
	// Two replicas on the same port of two loopback addresses, behind one
	// address the webhook configurations call.
	port := freePort(t)
	_, p, _ := net.SplitHostPort(port)
	lb := newBalancer(t, "127.0.0.2:"+p, "127.0.0.3:"+p)

	// Short lifetimes force rotations within the test: the serving
	// certificate every 20s, the CA after 50s.
	// The API server presents a client certificate (its admission
	// configuration); promenroll requires one signed by clientCA.
	vals := map[string]any{
		"tls":      map[string]any{"mode": "selfManaged", "selfManaged": map[string]any{"caValidity": "75s", "certValidity": "30s"}},
		"clientCA": string(c.AdmissionClientCA),
	}
	rel := helmInstall(t, c, vals, urlClientConfig{base: fmt.Sprintf("https://127.0.0.1:%d", lb.port())})

	// Run the chart's Deployment as two local processes: its arguments,
	// its ServiceAccount's permissions, its policy.
	var dep appsv1.Deployment
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "promenroll"}, &dep); err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "promenroll-policy"}, &cm); err != nil {
		t.Fatal(err)
	}
	policyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(policyDir, "policy.yaml"), []byte(cm.Data["policy.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	var clientCA corev1.ConfigMap
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "promenroll-client-ca"}, &clientCA); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(policyDir, "client-ca.crt"), []byte(clientCA.Data["ca.crt"]), 0o600); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--client-ca=/etc/promenroll/client-ca/ca.crt") {
		t.Fatalf("clientCA set, but the Deployment does not pass --client-ca: %v", dep.Spec.Template.Spec.Containers[0].Args)
	}
	kubeconfig := saKubeconfig(t, c, dep.Spec.Template.Spec.ServiceAccountName)
	start := func(name, host string) *replica {
		r := &replica{name: name, addr: net.JoinHostPort(host, p), metrics: freePort(t), probe: freePort(t)}
		args := append(append([]string{}, dep.Spec.Template.Spec.Containers[0].Args...),
			"--policy="+filepath.Join(policyDir, "policy.yaml"),
			"--client-ca="+filepath.Join(policyDir, "client-ca.crt"),
			"--kubeconfig="+kubeconfig,
			"--namespace="+namespace,
			"--bind-host="+host, "--port="+p,
			"--metrics-bind-address="+r.metrics, "--health-probe-bind-address="+r.probe,
			// The API server calls 127.0.0.1 here, not the Service's name.
			"--tls-extra-names=127.0.0.1",
			"--tls-trust-settle=3s",
			"--shutdown-delay=1s",
			"--crd-check-interval=1s",
		)
		proc, err := c.Serve(name, args...)
		if err != nil {
			t.Fatal(err)
		}
		r.proc = proc
		t.Cleanup(func() { proc.Stop() })
		return r
	}
	a, b := start("promenroll-a", "127.0.0.2"), start("promenroll-b", "127.0.0.3")
	testwait.True(t, "both replicas are ready", 60*time.Second, func() bool {
		for _, r := range []*replica{a, b} {
			if done, how := r.proc.Exited(); done {
				t.Fatalf("%s: %s", r.name, how)
			}
		}
		return a.ready() && b.ready()
	})
	secretFilled := func() *corev1.Secret {
		var s corev1.Secret
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "promenroll-tls"}, &s); err != nil {
			t.Fatal(err)
		}
		return &s
	}
	sec := secretFilled()
	for _, k := range []string{"ca.crt", "ca.key", "tls.crt", "tls.key"} {
		if len(sec.Data[k]) == 0 {
			t.Fatalf("the Secret lacks %s", k)
		}
	}
	if a.leading() == b.leading() {
		t.Fatalf("leaders: a %v, b %v; want exactly one", a.leading(), b.leading())
	}

	// The API server calls promenroll: a Deployment is enrolled, a
	// PrometheusRule is judged (the rule webhook fails closed, so an
	// untrusted certificate would refuse it).
	createNamespace(t, c, "tls-e2e")
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	admit := func(i int) {
		sent.Add(1)
		err := func() error {
			d := deployment(fmt.Sprintf("load-%d", i))
			if err := c.Client.Create(ctx, d, client.DryRunAll); err != nil {
				return err
			}
			if d.Labels["monitoring.promenroll.io/scrape"] != "true" {
				return fmt.Errorf("deployment %s not enrolled: %v", d.Name, d.Labels)
			}
			return c.Client.Create(ctx, rule(fmt.Sprintf("load-%d", i)), client.DryRunAll)
		}()
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
	}
	admit(0)
	if failed.Load() > 0 {
		t.Fatalf("the API server cannot call promenroll: %v", firstErr.Load())
	}
	// Anyone else, without the API server's client certificate, is
	// refused at the handshake.
	if resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}).Post( //nolint:gosec // the server's identity is not what is tested
		fmt.Sprintf("https://127.0.0.1:%d/validate", lb.port()), "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		t.Errorf("a caller without a client certificate got HTTP %d", resp.StatusCode)
	}

	// Load through two serving-certificate renewals and a CA renewal.
	serials := map[string]bool{}
	cas := map[string]bool{}
	observe := func() {
		s := secretFilled()
		serials[string(s.Data["tls.crt"])] = true
		if certs := pemCerts(s.Data["ca.crt"]); len(certs) > 0 {
			cas[string(certs[0].Raw)] = true
		}
	}
	// loadUntil sends admissions from 4 clients (one each 20ms at most)
	// while this goroutine watches the Secret, until stop (evaluated here
	// only) or timeout.
	loadUntil := func(timeout time.Duration, stop func() bool) {
		var wg sync.WaitGroup
		var done atomic.Bool
		deadline := time.Now().Add(timeout)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(deadline) && !done.Load(); i++ {
					admit(w*100000 + i)
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		_ = testwait.Until(t.Context(), timeout, func() (bool, error) { observe(); return stop(), nil })
		done.Store(true)
		wg.Wait()
	}
	loadUntil(90*time.Second, func() bool { return len(serials) >= 3 && len(cas) >= 2 })
	if len(serials) < 3 || len(cas) < 2 {
		t.Errorf("in 90s: %d serving certificates and %d CAs seen, want 3 and 2 (rotation not happening)", len(serials), len(cas))
	}
	if failed.Load() > 0 {
		t.Errorf("%d of %d admissions failed during rotation; first: %v", failed.Load(), sent.Load(), firstErr.Load())
	}
	t.Logf("%d admissions during %d serving certificates and %d CAs, %d failed", sent.Load(), len(serials), len(cas), failed.Load())

	// The leader stops (a rolling update, a drained node): the other
	// replica takes over the lease at once and keeps rotating.
	leader, other := a, b
	if b.leading() {
		leader, other = b, a
	}
	if code := leader.proc.Stop(); code != 0 {
		t.Errorf("%s exited %d on SIGTERM", leader.name, code)
	}
	testwait.True(t, other.name+" takes the lease", 30*time.Second, other.leading)
	var lease coordinationv1.Lease
	if err := c.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "promenroll-tls"}, &lease); err != nil {
		t.Fatal(err)
	}
	before := len(serials)
	sent.Store(0)
	loadUntil(40*time.Second, func() bool { return len(serials) > before })
	if len(serials) <= before {
		t.Errorf("no certificate renewed by %s after the leader stopped", other.name)
	}
	if failed.Load() > 0 {
		t.Errorf("%d admissions failed after the takeover; first: %v", failed.Load(), firstErr.Load())
	}
	if n := other.metric("promenroll_tls_certificates_issued_total", `certificate="serving"`); n < 1 {
		t.Errorf("%s issued no serving certificate after taking over (promenroll_tls_certificates_issued_total{certificate=serving} = %v)", other.name, n)
	}

	// A Secret edited by hand to garbage is repaired, counted, and no
	// request fails meanwhile: the replica keeps its last good certificate.
	repairsBefore := other.metric("promenroll_tls_certificates_issued_total", `certificate="ca",reason="unusable"`)
	garbage := secretFilled()
	for k := range garbage.Data {
		garbage.Data[k] = []byte("garbage")
	}
	if err := c.Client.Update(ctx, garbage); err != nil {
		t.Fatal(err)
	}
	repaired := func() bool {
		return other.metric("promenroll_tls_certificates_issued_total", `certificate="ca",reason="unusable"`) > max(repairsBefore, 0)
	}
	loadUntil(30*time.Second, repaired)
	if !repaired() {
		t.Error("the garbage Secret was not repaired (or not counted)")
	}
	if failed.Load() > 0 {
		t.Errorf("%d admissions failed while the garbage Secret was repaired; first: %v", failed.Load(), firstErr.Load())
	}
	testwait.True(t, other.name+" serves the repaired Secret's certificate", 30*time.Second, func() bool {
		want := pemCerts(secretFilled().Data["tls.crt"])
		got := servedCert(other.addr)
		return len(want) > 0 && got != nil && got.Equal(want[0])
	})
	admit(999999)
	if failed.Load() > 0 {
		t.Errorf("the API server cannot call promenroll after the repair: %v", firstErr.Load())
	}
	other.proc.Stop()

	// helm uninstall: the webhook configurations go first; nothing of the
	// release is left but what it keeps on purpose (the OpenReports CRD,
	// helm.sh/resource-policy: keep: other tools write Reports too), and
	// writes are no longer intercepted.
	if err := uninstall(t, c); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	assertNothingLeft(t, c, rel.Manifest)
	if err := c.Client.Create(ctx, rule("after-uninstall"), client.DryRunAll); err != nil {
		t.Errorf("a PrometheusRule is refused after uninstall: %v", err)
	}
}

// helmInstall is `helm install promenroll` of the chart with vals into
// the release namespace (created), post-rendered by post unless nil; the
// test's cleanup uninstalls it (an error if the test did already).
func helmInstall(t *testing.T, c *cluster.Cluster, vals map[string]any, post postrenderer.PostRenderer) *releasev1.Release {
	t.Helper()
	install := action.NewInstall(helmConfig(t, c.Kubeconfig))
	install.ReleaseName, install.Namespace, install.CreateNamespace = "promenroll", namespace, true
	install.WaitStrategy = kube.HookOnlyStrategy
	install.PostRenderer = post
	res, err := install.RunWithContext(t.Context(), loadChart(t), vals)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	t.Cleanup(func() { _ = uninstall(t, c) })
	return res.(*releasev1.Release)
}

// uninstall is `helm uninstall promenroll`.
func uninstall(t *testing.T, c *cluster.Cluster) error {
	u := action.NewUninstall(helmConfig(t, c.Kubeconfig))
	u.WaitStrategy = kube.HookOnlyStrategy
	_, err := u.Run("promenroll")
	return err
}

// assertNothingLeft: none of a release's objects is left after helm
// uninstall, but what it keeps on purpose (the OpenReports CRD,
// helm.sh/resource-policy: keep: other tools write Reports too), and no
// Secret in its namespace (the TLS Secret promenroll fills is the
// release's).
func assertNothingLeft(t *testing.T, c *cluster.Cluster, manifest string) {
	t.Helper()
	ctx := t.Context()
	in, err := manifests.Parse("release", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	for kind, docs := range in.ByKind {
		for _, doc := range docs {
			var m metav1.PartialObjectMetadata
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatal(err)
			}
			if m.Annotations["helm.sh/resource-policy"] == "keep" {
				if kind != "CustomResourceDefinition" || m.Name != "reports.openreports.io" {
					t.Errorf("%s %s is kept on uninstall: only the OpenReports CRD may be", kind, m.Name)
				}
				continue
			}
			args := []string{"get", kind + "." + groupOf(m.APIVersion), m.Name, "--ignore-not-found", "-o", "name"}
			if m.Namespace != "" {
				args = append(args, "-n", m.Namespace)
			}
			out, _, err := c.Kubectl(ctx, "", args...)
			if err != nil || strings.TrimSpace(out) != "" {
				t.Errorf("left after uninstall: %s %s/%s (%v)", kind, m.Namespace, m.Name, err)
			}
		}
	}
	var secrets corev1.SecretList
	if err := c.Client.List(ctx, &secrets, client.InNamespace(namespace)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		t.Errorf("Secret %s left after uninstall", s.Name)
	}
}

func groupOf(apiVersion string) string {
	if g, _, ok := strings.Cut(apiVersion, "/"); ok {
		return g
	}
	return ""
}

func createNamespace(t *testing.T, c *cluster.Cluster, name string) {
	t.Helper()
	err := c.Client.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

func deployment(name string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tls-e2e", Name: name},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "app",
					Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 8080}},
				}}},
			},
		},
	}
}

func rule(name string) *monv1.PrometheusRule {
	return &monv1.PrometheusRule{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tls-e2e", Name: name},
		Spec: monv1.PrometheusRuleSpec{Groups: []monv1.RuleGroup{{
			Name: "g",
			Rules: []monv1.Rule{{
				Alert:  "Down",
				Expr:   intstr.FromString("up == 0"),
				Labels: map[string]string{"severity": "warning"},
			}},
		}}},
	}
}

// servedCert is the certificate a replica presents (read during the
// handshake, which it then ends for want of a client certificate).
func servedCert(addr string) *x509.Certificate {
	var got *x509.Certificate
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil
	}
	defer conn.Close()
	_ = tls.Client(conn, &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error { //nolint:gosec // reading the certificate only
		if len(cs.PeerCertificates) > 0 {
			got = cs.PeerCertificates[0]
		}
		return nil
	}}).Handshake()
	return got
}

func pemCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}
