package cluster

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/promenroll/promenroll/internal/testwait"
)

// The Prometheus the harness runs, named and selecting as
// kube-prometheus-stack's does for a Helm release called
// kube-prometheus-stack.
const (
	MonitoringNamespace = "kube-prometheus-stack"
	PrometheusName      = "kube-prometheus-stack-prometheus"
	ReleaseLabel        = "kube-prometheus-stack"
	// nodeName is the one Node the harness' kubelet stands for.
	nodeName = "promenroll-e2e-node"
)

// Monitoring is the real monitoring stack in the local control plane:
// kube-controller-manager (Deployments become ReplicaSets become Pods;
// Services get Endpoints and EndpointSlices), prometheus-operator run out of
// cluster, and Prometheus started with the configuration the operator
// generates. The harness plays two parts that need a node: the kubelet
// (Pods run: they get an IP and a /metrics endpoint on each declared port)
// and the config-reloader (the operator's config Secret and rule
// ConfigMaps are written to files, and Prometheus reloaded).
type Monitoring struct {
	// PrometheusURL is Prometheus' HTTP API, e.g. http://127.0.0.1:PORT.
	PrometheusURL string
	// PodNetworkNote says why Pod IPs are on loopback ("" when they are in
	// the harness' network namespace and Services get endpoints).
	PodNetworkNote string
	// Started says how long each part took to become ready.
	Started map[string]time.Duration

	c       *Cluster
	dir     string
	net     *podNetwork
	kubelet *kubelet
	procs   []*process
	prom    *process
	// promBin and promArgs start Prometheus again, at the same address.
	promBin  string
	promArgs []string
	promMu   sync.Mutex
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// ServicesHaveEndpoints reports whether Services get endpoints (Pod IPs
// outside loopback, in the harness' network namespace).
func (m *Monitoring) ServicesHaveEndpoints() bool { return m.c.node != nil || m.net.Namespaced() }

// LogDir is where the stack's programs write their logs.
func (m *Monitoring) LogDir() string { return m.c.LogDir }

// Monitoring starts the monitoring stack once and returns it; later calls
// return the same stack (or the error of the first start).
func (c *Cluster) Monitoring(ctx context.Context) (*Monitoring, error) {
	c.monOnce.Do(func() { c.mon, c.monErr = c.startMonitoring(ctx) })
	return c.mon, c.monErr
}

func (c *Cluster) startMonitoring(ctx context.Context) (m *Monitoring, err error) {
	bins := map[string]string{
		"kube-controller-manager": filepath.Join(c.Root, "bin", "k8s", "kube-controller-manager"),
		"prometheus-operator":     filepath.Join(c.Root, "bin", "prometheus-operator"),
		"prometheus":              filepath.Join(c.Root, "bin", "prometheus"),
	}
	for name, b := range bins {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s missing (%s): run `make test-bins`", name, b)
		}
	}
	m = &Monitoring{c: c, dir: filepath.Join(c.Dir, "monitoring"), Started: map[string]time.Duration{}}
	defer func() {
		if err != nil {
			m.stop()
		}
	}()
	if err := os.MkdirAll(filepath.Join(m.dir, "rules"), 0o700); err != nil {
		return nil, err
	}
	if c.node == nil {
		m.net, m.PodNetworkNote = newPodNetwork()
	}
	creds, err := c.writeClientCredentials(m.dir)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel

	start := time.Now()
	controllers := "deployment-controller,replicaset-controller,job-controller,cronjob-controller,endpoints-controller,endpointslice-controller"
	kcmArgs := []string{
		"--kubeconfig", c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=2", "--concurrent-replicaset-syncs=2",
	}
	if c.node != nil {
		// What real Pods need: a default ServiceAccount in every namespace,
		// kube-root-ca.crt for their token volume, the garbage collector
		// deleting what a deleted Deployment owned, and the node lifecycle
		// controller taking the not-ready taint the kubelet registers its
		// node with off once it is Ready.
		controllers += ",serviceaccount-controller,root-ca-certificate-publisher-controller,garbage-collector-controller,node-lifecycle-controller"
		kcmArgs = append(kcmArgs, "--root-ca-file", filepath.Join(c.Dir, "apiserver", "ca.crt"))
	}
	kcm, err := startProcess(c.LogDir, "kube-controller-manager", bins["kube-controller-manager"], append(kcmArgs, "--controllers", controllers), nil)
	if err != nil {
		return nil, err
	}
	m.procs = append(m.procs, kcm)

	// On a real node its kubelet runs the Pods; otherwise the harness does.
	if c.node == nil {
		if err := c.ensureNode(ctx); err != nil {
			return nil, err
		}
		m.kubelet = &kubelet{c: c, net: m.net, pods: map[types.UID]*runningPod{}}
		m.wg.Add(1)
		go func() { defer m.wg.Done(); m.kubelet.run(runCtx) }()
	}

	opStart := time.Now()
	opAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	op, err := startProcess(c.LogDir, "prometheus-operator", bins["prometheus-operator"], []string{
		"--apiserver", c.Config.Host,
		"--cert-file", creds.cert, "--key-file", creds.key, "--ca-file", creds.ca,
		"--web.listen-address", opAddr,
		"--log-level", "info",
	}, nil)
	if err != nil {
		return nil, err
	}
	m.procs = append(m.procs, op)
	if err := c.createPrometheus(ctx, creds); err != nil {
		return nil, err
	}
	config, err := m.waitForConfig(ctx, op)
	if err != nil {
		return nil, err
	}
	m.Started["prometheus-operator (start to first configuration)"] = time.Since(opStart)

	promStart := time.Now()
	promAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	m.PrometheusURL = "http://" + promAddr
	m.promBin, m.promArgs = bins["prometheus"], []string{
		"--config.file", config,
		"--storage.tsdb.path", filepath.Join(m.dir, "data"),
		"--web.listen-address", promAddr,
		"--web.enable-lifecycle",
		"--log.level", "info",
	}
	if err := m.StartPrometheus(ctx); err != nil {
		return nil, err
	}
	m.Started["prometheus (start to ready)"] = time.Since(promStart)
	m.Started["monitoring stack (all)"] = time.Since(start)

	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.reloadLoop(runCtx, config) }()
	return m, nil
}

// credentials are the admin client certificate files the operator and
// Prometheus' Kubernetes discovery use.
type credentials struct{ cert, key, ca string }

func (c *Cluster) writeClientCredentials(dir string) (credentials, error) {
	cr := credentials{cert: filepath.Join(dir, "client.crt"), key: filepath.Join(dir, "client.key"), ca: filepath.Join(dir, "ca.crt")}
	for path, data := range map[string][]byte{cr.cert: c.Config.CertData, cr.key: c.Config.KeyData, cr.ca: c.Config.CAData} {
		if len(data) == 0 {
			return cr, fmt.Errorf("the control plane's admin config has no client certificate for %s", filepath.Base(path))
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return cr, err
		}
	}
	return cr, nil
}

// ensureNode creates the Node the harness' kubelet stands for.
func (c *Cluster) ensureNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	if err := c.Client.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node: %w", err)
	}
	node.Status = corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: nodeName}},
	}
	return c.Client.Status().Update(ctx, node)
}

// createPrometheus creates the monitoring and promenroll namespaces and a
// Prometheus styled
// on kube-prometheus-stack's: release selectors, every namespace, a short
// interval, and Kubernetes discovery pointed at the local API server.
func (c *Cluster) createPrometheus(ctx context.Context, creds credentials) error {
	// promenroll's namespace too: deploy/base/monitors installs there.
	for _, name := range []string{MonitoringNamespace, Namespace} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if err := c.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	release := &metav1.LabelSelector{MatchLabels: map[string]string{"release": ReleaseLabel}}
	all := &metav1.LabelSelector{}
	p := &monv1.Prometheus{
		ObjectMeta: metav1.ObjectMeta{Name: PrometheusName, Namespace: MonitoringNamespace, Labels: map[string]string{"release": ReleaseLabel}},
		Spec: monv1.PrometheusSpec{
			CommonPrometheusFields: monv1.CommonPrometheusFields{
				ServiceMonitorSelector: release, ServiceMonitorNamespaceSelector: all,
				PodMonitorSelector: release, PodMonitorNamespaceSelector: all,
				ScrapeInterval: "2s",
				ScrapeTimeout:  "1s",
				APIServerConfig: &monv1.APIServerConfig{
					Host:      c.Config.Host,
					TLSConfig: &monv1.TLSConfig{TLSFilesConfig: monv1.TLSFilesConfig{CAFile: creds.ca, CertFile: creds.cert, KeyFile: creds.key}},
				},
			},
			RuleSelector: release, RuleNamespaceSelector: all,
			EvaluationInterval: "2s",
		},
	}
	if err := c.Client.Create(ctx, p); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Prometheus %s/%s: %w", MonitoringNamespace, PrometheusName, err)
	}
	return nil
}

// waitForConfig waits for the operator's first configuration and writes it.
func (m *Monitoring) waitForConfig(ctx context.Context, op *process) (string, error) {
	config := filepath.Join(m.dir, "prometheus.yaml")
	err := testwait.Until(ctx, 2*time.Minute, func() (bool, error) {
		if done, why := op.exited(); done {
			return false, testwait.Final(errors.New(why))
		}
		_, err := m.sync(ctx, config)
		return err == nil, err
	})
	if err != nil {
		return "", fmt.Errorf("prometheus-operator wrote no configuration for %s/%s within 2m (%w): see %s", MonitoringNamespace, PrometheusName, err, op.log)
	}
	return config, nil
}

// reloadLoop is the config-reloader: it follows the operator's Secret and
// rule ConfigMaps and reloads Prometheus when they change.
func (m *Monitoring) reloadLoop(ctx context.Context, config string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		changed, err := m.sync(ctx, config)
		if err != nil || !changed {
			continue
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, m.PrometheusURL+"/-/reload", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
}

// sync writes the operator's configuration and rule files, as the
// config-reloader does in the Prometheus pod: the Secret's
// prometheus.yaml.gz unpacked with $(SHARD) and $(POD_NAME) substituted,
// the rule ConfigMaps' files under one folder per ConfigMap, remapped from
// /etc/prometheus/rules. It reports whether anything changed.
func (m *Monitoring) sync(ctx context.Context, config string) (bool, error) {
	var secret corev1.Secret
	if err := m.c.Client.Get(ctx, client.ObjectKey{Namespace: MonitoringNamespace, Name: "prometheus-" + PrometheusName}, &secret); err != nil {
		return false, err
	}
	gz, ok := secret.Data["prometheus.yaml.gz"]
	if !ok {
		return false, errors.New("no prometheus.yaml.gz in the operator's Secret yet")
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return false, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return false, err
	}
	rulesDir := filepath.Join(m.dir, "rules")
	text := strings.NewReplacer(
		"$(SHARD)", "0",
		"$(POD_NAME)", "prometheus-"+PrometheusName+"-0",
		"/etc/prometheus/rules/", rulesDir+"/",
	).Replace(string(raw))
	changed, err := writeIfChanged(config, []byte(text))
	if err != nil {
		return false, err
	}

	var cms corev1.ConfigMapList
	if err := m.c.Client.List(ctx, &cms, client.InNamespace(MonitoringNamespace), client.MatchingLabels{"prometheus-name": PrometheusName}); err != nil {
		return changed, err
	}
	want := map[string]bool{}
	for _, cm := range cms.Items {
		dir := filepath.Join(rulesDir, cm.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return changed, err
		}
		want[cm.Name] = true
		files := map[string]bool{}
		for name, data := range cm.Data {
			files[name] = true
			c, err := writeIfChanged(filepath.Join(dir, name), []byte(data))
			if err != nil {
				return changed, err
			}
			changed = changed || c
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !files[e.Name()] {
				_ = os.Remove(filepath.Join(dir, e.Name()))
				changed = true
			}
		}
	}
	entries, _ := os.ReadDir(rulesDir)
	for _, e := range entries {
		if !want[e.Name()] {
			_ = os.RemoveAll(filepath.Join(rulesDir, e.Name()))
			changed = true
		}
	}
	return changed, nil
}

func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

func waitHTTP(ctx context.Context, u string, p *process, limit time.Duration) error {
	err := testwait.Until(ctx, limit, func() (bool, error) {
		if done, why := p.exited(); done {
			return false, testwait.Final(errors.New(why))
		}
		resp, err := http.Get(u)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%s did not answer 200 on %s within %s (%w): see %s", p.name, u, limit, err, p.log)
	}
	return nil
}

// stop ends everything the stack started, Prometheus first.
func (m *Monitoring) stop() {
	if m == nil {
		return
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	m.StopPrometheus()
	for i := len(m.procs) - 1; i >= 0; i-- {
		m.procs[i].stop(10 * time.Second)
	}
	if m.kubelet != nil {
		m.kubelet.closeAll()
	}
	m.net.close()
}

// Target is one of Prometheus' active targets (/api/v1/targets).
type Target struct {
	Labels     map[string]string `json:"labels"`
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
}

// AllTargets returns Prometheus' active targets, sorted by scrape URL, and
// the discovered labels of the dropped ones (with __scrape_pool__ added).
func (m *Monitoring) AllTargets(ctx context.Context) ([]Target, []map[string]string, error) {
	var data struct {
		ActiveTargets  []Target `json:"activeTargets"`
		DroppedTargets []struct {
			DiscoveredLabels map[string]string `json:"discoveredLabels"`
			ScrapePool       string            `json:"scrapePool"`
		} `json:"droppedTargets"`
	}
	if err := m.api(ctx, "/api/v1/targets", &data); err != nil {
		return nil, nil, err
	}
	sort.Slice(data.ActiveTargets, func(i, j int) bool { return data.ActiveTargets[i].ScrapeURL < data.ActiveTargets[j].ScrapeURL })
	var dropped []map[string]string
	for _, d := range data.DroppedTargets {
		l := map[string]string{"__scrape_pool__": d.ScrapePool}
		for k, v := range d.DiscoveredLabels {
			l[k] = v
		}
		if l["__scrape_pool__"] == "" {
			l["__scrape_pool__"] = d.DiscoveredLabels["job"]
		}
		dropped = append(dropped, l)
	}
	return data.ActiveTargets, dropped, nil
}

// RuleGroup is a rule group Prometheus loaded (/api/v1/rules).
type RuleGroup struct {
	Name  string `json:"name"`
	File  string `json:"file"`
	Rules []struct {
		Name   string `json:"name"`
		Health string `json:"health"`
		Type   string `json:"type"`
	} `json:"rules"`
}

// RuleGroups returns the rule groups Prometheus loaded.
func (m *Monitoring) RuleGroups(ctx context.Context) ([]RuleGroup, error) {
	var data struct {
		Groups []RuleGroup `json:"groups"`
	}
	err := m.api(ctx, "/api/v1/rules", &data)
	return data.Groups, err
}

// Query runs an instant PromQL query and returns each series' labels and
// value.
func (m *Monitoring) Query(ctx context.Context, q string) ([]map[string]string, error) {
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
		} `json:"result"`
	}
	if err := m.api(ctx, "/api/v1/query?query="+url.QueryEscape(q), &data); err != nil {
		return nil, err
	}
	var out []map[string]string
	for _, r := range data.Result {
		row := map[string]string{}
		for k, v := range r.Metric {
			row[k] = v
		}
		if len(r.Value) == 2 {
			row["__value__"] = fmt.Sprint(r.Value[1])
		}
		out = append(out, row)
	}
	return out, nil
}

func (m *Monitoring) api(ctx context.Context, path string, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.PrometheusURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("prometheus %s: %w", path, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("prometheus %s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, data)
}

// Hits returns the paths the Pod at ip:port was scraped on.
func (m *Monitoring) Hits(ipPort string) []string { return m.kubelet.hits(ipPort) }

// StopPrometheus stops Prometheus (a fault: the status' reporter loses it).
func (m *Monitoring) StopPrometheus() {
	m.promMu.Lock()
	defer m.promMu.Unlock()
	if m.prom != nil {
		m.prom.stop(10 * time.Second)
		m.prom = nil
	}
}

// StartPrometheus starts Prometheus at its address, with its data, and
// waits until it is ready.
func (m *Monitoring) StartPrometheus(ctx context.Context) error {
	m.promMu.Lock()
	defer m.promMu.Unlock()
	if m.prom != nil {
		return nil
	}
	p, err := startProcess(m.c.LogDir, "prometheus", m.promBin, m.promArgs, nil)
	if err != nil {
		return err
	}
	m.prom = p
	return waitHTTP(ctx, m.PrometheusURL+"/-/ready", p, 2*time.Minute)
}
