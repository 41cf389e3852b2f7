package deploy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/promenroll/promenroll/policy"
	"github.com/promenroll/promenroll/test/manifests"
)

func one[T any](t *testing.T, in *manifests.Install, kind string) *T {
	t.Helper()
	v, err := manifests.One[T](in, kind)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// enrollmentMonitors returns the shipped PodMonitor and ServiceMonitor.
func enrollmentMonitors(t *testing.T, in *manifests.Install) (*monv1.PodMonitor, *monv1.ServiceMonitor) {
	t.Helper()
	pm := one[monv1.PodMonitor](t, in, "PodMonitor")
	var sm *monv1.ServiceMonitor
	for _, doc := range in.ByKind["ServiceMonitor"] {
		var m monv1.ServiceMonitor
		if err := yaml.UnmarshalStrict(doc, &m); err != nil {
			t.Fatal(err)
		}
		if m.Name == "promenroll-services" {
			sm = &m
		}
	}
	if sm == nil {
		t.Fatal("deploy/base ships no ServiceMonitor promenroll-services")
	}
	return pm, sm
}

// relabelConfigs converts the monitor's relabelings as the operator writes
// them into the Prometheus configuration (policy.RelabelConfig, the monitor
// gate's conversion) and validates them with Prometheus' own code.
func relabelConfigs(t *testing.T, rcs []monv1.RelabelConfig) []*relabel.Config {
	t.Helper()
	var out []*relabel.Config
	for i, rc := range rcs {
		c, err := policy.RelabelConfig(rc)
		if err != nil {
			t.Fatalf("relabelings[%d]: %v", i, err)
		}
		if err := c.Validate(model.UTF8Validation); err != nil {
			t.Fatalf("relabelings[%d]: Prometheus refuses it: %v", i, err)
		}
		switch c.Action {
		case relabel.Keep, relabel.Drop, relabel.Replace, relabel.KeepEqual, relabel.DropEqual:
		default:
			t.Fatalf("relabelings[%d]: action %s is not one the enrollment monitors may use", i, c.Action)
		}
		out = append(out, c)
	}
	return out
}

// scrape is what is left of a discovered target after relabeling: nil when
// it is dropped.
type scrape struct{ Path, Scheme, Endpoint string }

func process(cfgs []*relabel.Config, meta map[string]string) *scrape {
	lb := labels.NewBuilder(labels.EmptyLabels())
	lb.Set(model.MetricsPathLabel, "/metrics")
	lb.Set(model.SchemeLabel, "http")
	for k, v := range meta {
		lb.Set(k, v)
	}
	if !relabel.ProcessBuilder(lb, cfgs...) {
		return nil
	}
	return &scrape{Path: lb.Get(model.MetricsPathLabel), Scheme: lb.Get(model.SchemeLabel), Endpoint: lb.Get("endpoint")}
}

// scrapeCase is a discovered target's meta labels and what the relabelings
// make of it.
type scrapeCase struct {
	name string
	meta map[string]string
	want *scrape
}

func runScrapeCases(t *testing.T, cfgs []*relabel.Config, tests []scrapeCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, process(cfgs, tt.meta)); diff != "" {
				t.Errorf("scrape (-want +got):\n%s", diff)
			}
		})
	}
}

const (
	podAnn     = "__meta_kubernetes_pod_annotation_prometheus_io_"
	podAnnPres = "__meta_kubernetes_pod_annotationpresent_prometheus_io_"
	svcAnn     = "__meta_kubernetes_service_annotation_prometheus_io_"
	svcAnnPres = "__meta_kubernetes_service_annotationpresent_prometheus_io_"
	portName   = "__meta_kubernetes_pod_container_port_name"
	portNumber = "__meta_kubernetes_pod_container_port_number"
	podEnroll  = "__meta_kubernetes_pod_label_monitoring_promenroll_io_scrape"
	epPortName = "__meta_kubernetes_endpoint_port_name"
)

// with returns base plus the annotation key=value pairs (kv alternating),
// marked present as Prometheus' Kubernetes discovery does.
func with(base map[string]string, prefix, present string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[prefix+kv[i]] = kv[i+1]
		out[present+kv[i]] = "true"
	}
	return out
}

func TestPodMonitorPortConventions(t *testing.T) {
	pm, _ := enrollmentMonitors(t, render(t, "base"))
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%d podMetricsEndpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
	}
	cfgs := relabelConfigs(t, pm.Spec.PodMetricsEndpoints[0].RelabelConfigs)
	port := func(name, number string) map[string]string {
		return map[string]string{portName: name, portNumber: number, "__address__": "10.0.0.1:" + number}
	}
	metricsAt := func(path, scheme, endpoint string) *scrape { return &scrape{path, scheme, endpoint} }
	tests := []scrapeCase{
		{"a port named metrics is scraped at /metrics", port("metrics", "9090"), metricsAt("/metrics", "http", "metrics")},
		{"a port named http-metrics is scraped at /metrics", port("http-metrics", "9090"), metricsAt("/metrics", "http", "http-metrics")},
		{"any other port name is not scraped", port("web", "8080"), nil},
		{"a container without ports is not scraped", map[string]string{"__address__": "10.0.0.1"}, nil},
		{"prometheus.io/port names the port to scrape", with(port("web", "8080"), podAnn, podAnnPres, "port", "web"), metricsAt("/metrics", "http", "web")},
		{"prometheus.io/port overrides the metrics port name", with(port("metrics", "9090"), podAnn, podAnnPres, "port", "web"), nil},
		{"prometheus.io/port as a number picks that port", with(port("web", "8080"), podAnn, podAnnPres, "port", "8080"), metricsAt("/metrics", "http", "web")},
		{"prometheus.io/port as a number skips the other ports", with(port("metrics", "9090"), podAnn, podAnnPres, "port", "8080"), nil},
		{"prometheus.io/port naming no declared port yields no target", with(port("web", "8080"), podAnn, podAnnPres, "port", "admin"), nil},
		{"prometheus.io/port on a container without ports yields no target", with(map[string]string{"__address__": "10.0.0.1"}, podAnn, podAnnPres, "port", "8080"), nil},
		{"an empty prometheus.io/port yields no target", with(port("metrics", "9090"), podAnn, podAnnPres, "port", ""), nil},
		{"prometheus.io/path sets the path", with(port("metrics", "9090"), podAnn, podAnnPres, "path", "/stats/prometheus"), metricsAt("/stats/prometheus", "http", "metrics")},
		{"a path without a leading slash is ignored", with(port("metrics", "9090"), podAnn, podAnnPres, "path", "stats"), metricsAt("/metrics", "http", "metrics")},
		{"prometheus.io/scheme https is used", with(port("metrics", "9090"), podAnn, podAnnPres, "scheme", "https"), metricsAt("/metrics", "https", "metrics")},
		{"a scheme other than http or https is ignored", with(port("metrics", "9090"), podAnn, podAnnPres, "scheme", "ftp"), metricsAt("/metrics", "http", "metrics")},
		{"prometheus.io/scrape false turns scraping off", with(port("metrics", "9090"), podAnn, podAnnPres, "scrape", "false"), nil},
		{"prometheus.io/scrape true changes nothing", with(port("metrics", "9090"), podAnn, podAnnPres, "scrape", "true"), metricsAt("/metrics", "http", "metrics")},
		{"port, path and scheme together", with(port("web", "8443"), podAnn, podAnnPres, "port", "web", "path", "/stats", "scheme", "https"), metricsAt("/stats", "https", "web")},
	}
	runScrapeCases(t, cfgs, tests)
}

func TestServiceMonitorPortConventionsAndThePodWins(t *testing.T) {
	_, sm := enrollmentMonitors(t, render(t, "base"))
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(sm.Spec.Endpoints))
	}
	cfgs := relabelConfigs(t, sm.Spec.Endpoints[0].RelabelConfigs)
	// ep is an endpoint of a Service port, backed by a pod's container port.
	ep := func(svcPort, number, podPort string, podLabels ...string) map[string]string {
		m := map[string]string{epPortName: svcPort, "__address__": "10.0.0.1:" + number, portName: podPort, portNumber: number}
		for i := 0; i+1 < len(podLabels); i += 2 {
			m[podLabels[i]] = podLabels[i+1]
		}
		return m
	}
	enrolled := []string{podEnroll, "true"}
	at := func(path, scheme, endpoint string) *scrape { return &scrape{path, scheme, endpoint} }
	tests := []scrapeCase{
		{"a Service port named http-metrics is scraped", ep("http-metrics", "8080", "web"), at("/metrics", "http", "http-metrics")},
		{"a Service port named metrics is scraped", ep("metrics", "8080", "web"), at("/metrics", "http", "metrics")},
		{"any other Service port is not scraped", ep("http", "8080", "web"), nil},
		{"an endpoint without a pod is scraped", map[string]string{epPortName: "metrics", "__address__": "10.0.0.1:9100"}, at("/metrics", "http", "metrics")},
		{"EndpointSlice discovery names the port too", map[string]string{"__meta_kubernetes_endpointslice_port_name": "http-metrics", "__address__": "10.0.0.1:9100"}, at("/metrics", "http", "http-metrics")},
		{"the pod wins: its metrics port is left to the PodMonitor", ep("http-metrics", "9090", "metrics", enrolled...), nil},
		{"the pod wins: its annotated port is left to the PodMonitor", with(ep("http-metrics", "8080", "web", enrolled...), podAnn, podAnnPres, "port", "web"), nil},
		{"the pod wins: its annotated port number is left to the PodMonitor", with(ep("http-metrics", "8080", "web", enrolled...), podAnn, podAnnPres, "port", "8080"), nil},
		{"an enrolled pod's other port is the Service's to scrape", ep("http-metrics", "8080", "web", enrolled...), at("/metrics", "http", "http-metrics")},
		{"an enrolled pod whose annotation wants another port leaves this one to the Service", with(ep("http-metrics", "9090", "metrics", enrolled...), podAnn, podAnnPres, "port", "admin"), at("/metrics", "http", "http-metrics")},
		{"a pod that is not enrolled leaves its metrics port to the Service", ep("http-metrics", "9090", "metrics"), at("/metrics", "http", "http-metrics")},
		{"a pod opted out of scraping leaves its port to the Service", with(ep("http-metrics", "9090", "metrics", enrolled...), podAnn, podAnnPres, "scrape", "false"), at("/metrics", "http", "http-metrics")},
		{"prometheus.io/port on the Service names the port", with(ep("web", "8080", "web"), svcAnn, svcAnnPres, "port", "web"), at("/metrics", "http", "web")},
		{"prometheus.io/port on the Service as a number is the endpoint's port", with(ep("web", "8080", "web"), svcAnn, svcAnnPres, "port", "8080"), at("/metrics", "http", "web")},
		{"prometheus.io/port on the Service overrides the metrics name", with(ep("metrics", "9090", "metrics"), svcAnn, svcAnnPres, "port", "8080"), nil},
		{"prometheus.io/port naming no Service port yields no target", with(ep("web", "8080", "web"), svcAnn, svcAnnPres, "port", "admin"), nil},
		{"prometheus.io/path and scheme on the Service", with(ep("metrics", "9090", "web"), svcAnn, svcAnnPres, "path", "/stats/prometheus", "scheme", "https"), at("/stats/prometheus", "https", "metrics")},
		{"a Service path without a leading slash is ignored", with(ep("metrics", "9090", "web"), svcAnn, svcAnnPres, "path", "stats"), at("/metrics", "http", "metrics")},
		{"prometheus.io/scrape false on the Service turns it off", with(ep("metrics", "9090", "web"), svcAnn, svcAnnPres, "scrape", "false"), nil},
	}
	runScrapeCases(t, cfgs, tests)
}

// TestAPodPortIsScrapedOnce runs both monitors over the targets one pod
// port yields (the PodMonitor's pod target and the ServiceMonitor's
// endpoint target) for the combinations of enrollment and port names, and
// counts the scrapes.
func TestAPodPortIsScrapedOnce(t *testing.T) {
	pm, sm := enrollmentMonitors(t, render(t, "base"))
	podCfgs := relabelConfigs(t, pm.Spec.PodMetricsEndpoints[0].RelabelConfigs)
	svcCfgs := relabelConfigs(t, sm.Spec.Endpoints[0].RelabelConfigs)
	for _, podPort := range []string{"metrics", "http-metrics", "web"} {
		for _, svcPort := range []string{"metrics", "http-metrics", "web"} {
			for _, podEnrolled := range []bool{true, false} {
				pod := map[string]string{portName: podPort, portNumber: "9090", "__address__": "10.0.0.1:9090"}
				endpoint := map[string]string{epPortName: svcPort, portName: podPort, portNumber: "9090", "__address__": "10.0.0.1:9090"}
				scrapes := 0
				if podEnrolled {
					endpoint[podEnroll] = "true"
					if process(podCfgs, pod) != nil { // the PodMonitor selects enrolled pods only
						scrapes++
					}
				}
				if process(svcCfgs, endpoint) != nil {
					scrapes++
				}
				wanted := (podEnrolled && podPort != "web") || svcPort != "web"
				if want := map[bool]int{true: 1, false: 0}[wanted]; scrapes != want {
					t.Errorf("pod port %s (enrolled %v) behind Service port %s: scraped %d times, want %d", podPort, podEnrolled, svcPort, scrapes, want)
				}
			}
		}
	}
}

// TestEnrollmentMonitorsSelectWhatThePolicyAdds ties deploy/'s two halves
// together: what the shipped policy adds to a new Deployment and Service is
// what the shipped monitors select, in every namespace, and the monitors
// carry the labels the policy asks of every monitor (monitors.labels).
func TestEnrollmentMonitorsSelectWhatThePolicyAdds(t *testing.T) {
	objs := render(t, "base")
	p := policyFrom(t, objs)
	pm, sm := enrollmentMonitors(t, objs)
	ns := policy.Namespace{Name: "shop"}
	if !pm.Spec.NamespaceSelector.Any || !sm.Spec.NamespaceSelector.Any {
		t.Error("the enrollment monitors must select every namespace (namespaceSelector.any)")
	}

	applied := func(d policy.Decision, target policy.Target) k8slabels.Set {
		set := k8slabels.Set{}
		for _, c := range d.Enforced() {
			if c.Target == target {
				set[c.Key] = c.Value
			}
		}
		return set
	}
	deploy := p.Enroll(policy.EnrollRequest{Operation: policy.Create, Namespace: ns, Object: policy.Object{
		Kind: "Deployment", Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"},
		PodTemplatePath: "spec.template", HasPodTemplate: true, PodTemplateLabels: map[string]string{"app": "web"},
	}})
	svc := p.Enroll(policy.EnrollRequest{Operation: policy.Create, Namespace: ns, Object: policy.Object{
		Kind: "Service", Name: "web", Namespace: "shop", Labels: map[string]string{"app.kubernetes.io/name": "web"},
	}})
	matches := func(sel metav1.LabelSelector, set k8slabels.Set) bool {
		s, err := metav1.LabelSelectorAsSelector(&sel)
		if err != nil {
			t.Fatal(err)
		}
		return s.Matches(set)
	}
	if set := applied(deploy, policy.PodTemplateLabels); !matches(pm.Spec.Selector, set) {
		t.Errorf("the PodMonitor selector %v does not select the pod template labels the policy adds: %v", pm.Spec.Selector, set)
	}
	if set := applied(svc, policy.MetadataLabels); !matches(sm.Spec.Selector, set) {
		t.Errorf("the ServiceMonitor selector %v does not select the Service labels the policy adds: %v", sm.Spec.Selector, set)
	}
	for _, m := range []metav1.ObjectMeta{pm.ObjectMeta, sm.ObjectMeta} {
		d := p.MonitorLabels(policy.Object{Kind: "PodMonitor", Name: m.Name, Namespace: m.Namespace, Labels: m.Labels}, policy.Namespace{Name: m.Namespace}, nil)
		if len(d.Changes) > 0 || len(d.Warnings) > 0 {
			t.Errorf("%s lacks the labels monitors.labels asks for (changes %v, warnings %v): change deploy/base/monitors/kustomization.yaml and the policy together", m.Name, d.Changes, d.Warnings)
		}
	}
}

// TestShippedMonitorsPassTheMonitorGate: promenroll's own monitors pass the
// gate it applies to everyone else's.
func TestShippedMonitorsPassTheMonitorGate(t *testing.T) {
	objs := render(t, "base")
	p := policyFrom(t, objs)
	ns := policy.Namespace{Name: "promenroll-system"}
	pm := one[monv1.PodMonitor](t, objs, "PodMonitor")
	if d := p.CheckPodMonitor(pm, ns).Denials(); len(d) > 0 {
		t.Errorf("PodMonitor %s: %v", pm.Name, d.ToAggregate())
	}
	for _, doc := range objs.ByKind["ServiceMonitor"] {
		var sm monv1.ServiceMonitor
		if err := yaml.UnmarshalStrict(doc, &sm); err != nil {
			t.Fatal(err)
		}
		if d := p.CheckServiceMonitor(&sm, ns).Denials(); len(d) > 0 {
			t.Errorf("ServiceMonitor %s: %v", sm.Name, d.ToAggregate())
		}
	}
}
